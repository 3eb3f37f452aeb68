//! `fixupctl collect`: everything support asks for, in one `.tar.gz`.
//!
//! The bundle holds, under one folder `osam-collect-<time>/`:
//!
//! | in the bundle | from |
//! |---|---|
//! | `fixup/` | the fixup directory: progress.txt, fixup.log, result.json, READY and the three input files |
//! | `run/state.json`, `run/stage1.lock`, `run/rescue.json` | PID 1's state file, the stage-1 lock's holder, rescue mode's mounts |
//! | `dmesg.txt` | the kernel log (`/dev/kmsg`, read without blocking) |
//! | `guest/manifest.json`, `guest/result.json` | the guest's `/opt/vmware/hcx/osam/data/`, when the guest is mounted |
//! | `proc/cmdline` | the kernel command line |
//! | `collect.txt` | when, which stack, and what was missing |
//!
//! What is missing is noted in `collect.txt`, never an error: the bundle
//! is most needed when things are broken. Gathering reads paths passed in
//! (tests use temporary trees); guest files are read through
//! [`GuestRoot`], confined to the guest tree.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::guestfs::GuestRoot;
use crate::protocol::config::{NETWORK_INTERFACE_MAP, REPLICA_DISK_MAP, SYSTEM_CONFIGURATION};
use crate::protocol::report::{FIXUP_LOG, PROGRESS, READY, RESULT};

/// The most bytes taken from any one file (fixup.log of a long run is a
/// few MiB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Rescue mode's record of what it mounted, in the run-time folder.
const RESCUE_STATE_FILE: &str = "rescue.json";
/// The most bytes of kernel log taken.
pub const MAX_KMSG_BYTES: usize = 8 << 20;

/// Where the bundle's contents come from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub fixup_dir: PathBuf,
    pub sysroot: PathBuf,
    /// The stack's run-time folder (`/run/osam`).
    pub run_dir: PathBuf,
    /// The kernel command line (`/proc/cmdline`).
    pub cmdline: PathBuf,
    /// The kernel log device (`/dev/kmsg`).
    pub kmsg: PathBuf,
}

impl Sources {
    /// The stack's own paths for a fixup directory and a guest tree.
    pub fn system(fixup_dir: &Path, sysroot: &Path, run_dir: &Path) -> Sources {
        Sources {
            fixup_dir: fixup_dir.to_path_buf(),
            sysroot: sysroot.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            cmdline: PathBuf::from("/proc/cmdline"),
            kmsg: PathBuf::from("/dev/kmsg"),
        }
    }
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path inside the bundle's folder.
    pub name: String,
    pub data: Vec<u8>,
}

/// What was gathered, and a line for each thing that was not.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    pub entries: Vec<Entry>,
    pub missing: Vec<String>,
}

/// Reads a regular file of the stack (not following a last symlink, not
/// blocking on a FIFO), up to [`MAX_FILE_BYTES`].
fn read_plain(path: &Path) -> io::Result<Vec<u8>> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut data = Vec::new();
    file.take(MAX_FILE_BYTES).read_to_end(&mut data)?;
    Ok(data)
}

impl Gathered {
    fn add(&mut self, name: &str, what: &Path, read: io::Result<Vec<u8>>) {
        match read {
            Ok(data) => self.entries.push(Entry {
                name: name.to_string(),
                data,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.missing
                    .push(format!("{name}: {} is missing", what.display()));
            }
            Err(e) => self
                .missing
                .push(format!("{name}: {}: {e}", what.display())),
        }
    }
}

/// Gathers the bundle's files (`collect.txt` is added by [`bundle`]).
pub fn gather(src: &Sources) -> Gathered {
    let mut g = Gathered::default();
    for f in [
        PROGRESS,
        FIXUP_LOG,
        RESULT,
        READY,
        SYSTEM_CONFIGURATION,
        REPLICA_DISK_MAP,
        NETWORK_INTERFACE_MAP,
    ] {
        let p = src.fixup_dir.join(f);
        g.add(&format!("fixup/{f}"), &p, read_plain(&p));
    }
    for f in [
        crate::runstate::STATE_FILE,
        crate::lock::LOCK_FILE,
        RESCUE_STATE_FILE,
    ] {
        let p = src.run_dir.join(f);
        g.add(&format!("run/{f}"), &p, read_plain(&p));
    }
    g.add(
        "dmesg.txt",
        &src.kmsg,
        read_kmsg(&src.kmsg).map(String::into_bytes),
    );
    g.add("proc/cmdline", &src.cmdline, read_plain(&src.cmdline));
    match GuestRoot::open(&src.sysroot) {
        Ok(root) => {
            for f in ["manifest.json", "result.json"] {
                let guest_path = format!("{}/{f}", crate::guestwrite::DATA_DIR);
                let shown = src.sysroot.join(guest_path.trim_start_matches('/'));
                g.add(
                    &format!("guest/{f}"),
                    &shown,
                    root.read(&guest_path, MAX_FILE_BYTES),
                );
            }
        }
        Err(e) => g.missing.push(format!(
            "guest/: the guest tree {} cannot be opened: {e}",
            src.sysroot.display()
        )),
    }
    g
}

/// One record of `/dev/kmsg` (`prio,seq,usec,flags;text`, then dictionary
/// lines starting with a space) as dmesg prints it: `[  5.140900] text`.
pub fn format_kmsg_record(record: &str) -> Option<String> {
    let first = record.lines().next()?;
    let (meta, text) = first.split_once(';')?;
    let usec: u64 = meta.split(',').nth(2)?.parse().ok()?;
    Some(format!(
        "[{:5}.{:06}] {}",
        usec / 1_000_000,
        usec % 1_000_000,
        text
    ))
}

/// The kernel log, read from `/dev/kmsg` without blocking: one record per
/// read, up to the end of what is there now.
pub fn read_kmsg(path: &Path) -> io::Result<String> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut out = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = format_kmsg_record(&rec) {
                    out.push_str(&line);
                    out.push('\n');
                }
                if out.len() >= MAX_KMSG_BYTES {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Records overwritten while reading: the next read goes on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(e) => {
                if out.is_empty() {
                    return Err(e);
                }
                break;
            }
        }
    }
    Ok(out)
}

/// `osam-collect-20261125T190003Z` for an RFC 3339 time.
pub fn bundle_stem(rfc3339: &str) -> String {
    let compact: String = rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("osam-collect-{compact}")
}

/// The `.tar.gz` of the gathered files under the folder `stem`, with
/// `collect.txt` first: every entry owned by root, mode 0644, modified at
/// `mtime` (seconds since the epoch), in a fixed order.
pub fn bundle(g: &Gathered, stem: &str, created: &str, mtime: u64) -> io::Result<Vec<u8>> {
    let mut index = format!(
        "OSAM fixup stack {} ({}), kernel {}\ncollected {created}\n\nfiles:\n",
        crate::VERSION,
        crate::STACK_ARCH,
        crate::protocol::result::kernel_release()
    );
    for e in &g.entries {
        index.push_str(&format!("  {} ({} bytes)\n", e.name, e.data.len()));
    }
    if !g.missing.is_empty() {
        index.push_str("\nnot collected:\n");
        for m in &g.missing {
            index.push_str(&format!("  {m}\n"));
        }
    }
    let gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut append = |name: &str, data: &[u8]| -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(format!("{stem}/{name}"))?;
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append(&h, data)
    };
    append("collect.txt", index.as_bytes())?;
    for e in &g.entries {
        append(&e.name, &e.data)?;
    }
    tar.into_inner()?.finish()
}

/// Where `--out` puts the bundle: into a folder under its own name, or at
/// the path given.
pub fn out_path(out: &Path, stem: &str) -> PathBuf {
    if out.is_dir() {
        out.join(format!("{stem}.tar.gz"))
    } else {
        out.to_path_buf()
    }
}

/// Writes the bundle to `path` (temp file + rename; the folder synced).
pub fn write_bundle(path: &Path, data: &[u8]) -> io::Result<()> {
    crate::fsutil::write_atomic(path, data, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;

    fn tree() -> (tempfile::TempDir, Sources) {
        let d = tempfile::tempdir().unwrap();
        let fixup = d.path().join("tmp/fixup");
        let sysroot = d.path().join("sysroot");
        let run = d.path().join("run/osam");
        let data = sysroot.join("opt/vmware/hcx/osam/data");
        for dir in [&fixup, &data, &run, &d.path().join("proc")] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(fixup.join("progress.txt"), "p1\np2\n").unwrap();
        fs::write(fixup.join("fixup.log"), "log\n").unwrap();
        fs::write(fixup.join("result.json"), "{\"status\":\"failed\"}\n").unwrap();
        fs::write(fixup.join("system-configuration.json"), "{}").unwrap();
        fs::write(run.join("state.json"), "{\"phase\":\"finished\"}\n").unwrap();
        fs::write(data.join("manifest.json"), "{\"changes\":[]}").unwrap();
        fs::write(d.path().join("proc/cmdline"), "osam.transport=disk\n").unwrap();
        // A kernel log stand-in: a regular file yields one record per read
        // only when it holds one; a single record is enough here.
        fs::write(
            d.path().join("kmsg"),
            "6,1,5140900,-;pvscsi: found\n SUBSYSTEM=pci\n",
        )
        .unwrap();
        let src = Sources {
            fixup_dir: fixup,
            sysroot,
            run_dir: run,
            cmdline: d.path().join("proc/cmdline"),
            kmsg: d.path().join("kmsg"),
        };
        (d, src)
    }

    fn unpack(gz: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut a = tar::Archive::new(GzDecoder::new(gz));
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mode = e.header().mode().unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, mode, data)
            })
            .collect()
    }

    #[test]
    fn bundles_what_is_there_and_lists_what_is_not() {
        let (_d, src) = tree();
        let g = gather(&src);
        let stem = bundle_stem("2026-11-25T19:00:03Z");
        assert_eq!(stem, "osam-collect-20261125T190003Z");
        let gz = bundle(&g, &stem, "2026-11-25T19:00:03Z", 1_795_633_203).unwrap();
        let files = unpack(&gz);
        let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "osam-collect-20261125T190003Z/collect.txt",
                "osam-collect-20261125T190003Z/fixup/progress.txt",
                "osam-collect-20261125T190003Z/fixup/fixup.log",
                "osam-collect-20261125T190003Z/fixup/result.json",
                "osam-collect-20261125T190003Z/fixup/system-configuration.json",
                "osam-collect-20261125T190003Z/run/state.json",
                "osam-collect-20261125T190003Z/dmesg.txt",
                "osam-collect-20261125T190003Z/proc/cmdline",
                "osam-collect-20261125T190003Z/guest/manifest.json",
            ]
        );
        assert!(files.iter().all(|(_, mode, _)| *mode == 0o644));
        let get = |n: &str| {
            files
                .iter()
                .find(|(name, _, _)| name.ends_with(n))
                .map(|(_, _, d)| String::from_utf8_lossy(d).into_owned())
                .unwrap()
        };
        assert_eq!(get("/dmesg.txt"), "[    5.140900] pvscsi: found\n");
        assert_eq!(get("/fixup/progress.txt"), "p1\np2\n");
        let index = get("/collect.txt");
        assert!(index.contains("not collected:"), "{index}");
        assert!(index.contains("fixup/READY:"), "{index}");
        assert!(index.contains("guest/result.json:"), "{index}");
        assert!(index.contains("run/stage1.lock:"), "{index}");
    }

    #[test]
    fn a_guest_symlink_out_of_the_tree_is_not_followed() {
        let (d, src) = tree();
        let secret = d.path().join("secret");
        fs::write(&secret, "host secret").unwrap();
        let data = src.sysroot.join("opt/vmware/hcx/osam/data");
        std::os::unix::fs::symlink(&secret, data.join("result.json")).unwrap();
        let g = gather(&src);
        assert!(
            g.entries
                .iter()
                .all(|e| !String::from_utf8_lossy(&e.data).contains("host secret"))
        );
    }

    #[test]
    fn a_fifo_in_the_fixup_dir_does_not_block() {
        let (_d, src) = tree();
        nix::unistd::mkfifo(
            &src.fixup_dir.join("READY"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let g = gather(&src);
        assert!(
            g.missing
                .iter()
                .any(|m| m.starts_with("fixup/READY") && m.contains("not a regular file")),
            "{:?}",
            g.missing
        );
    }

    #[test]
    fn kmsg_records_read_like_dmesg() {
        assert_eq!(
            format_kmsg_record("4,12,1000001,c;sd 2:0:15:0: [sda] 131072 blocks\n DEVICE=b8:0\n")
                .as_deref(),
            Some("[    1.000001] sd 2:0:15:0: [sda] 131072 blocks")
        );
        assert_eq!(format_kmsg_record("no separator"), None);
        assert_eq!(format_kmsg_record("6,1,x,-;text"), None);
    }

    #[test]
    fn out_goes_into_a_folder_or_to_the_path() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            out_path(d.path(), "osam-collect-x"),
            d.path().join("osam-collect-x.tar.gz")
        );
        let file = d.path().join("b.tgz");
        assert_eq!(out_path(&file, "osam-collect-x"), file);
    }
}
