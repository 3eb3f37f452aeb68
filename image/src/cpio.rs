//! cpio "newc" archives (the initramfs format): a deterministic writer and a
//! bounds-checked reader.
//!
//! The writer sorts entries by path, creates missing parent folders (0755),
//! sets uid/gid 0, clamps every mtime to `SOURCE_DATE_EPOCH`, numbers inodes
//! in order and gives files one link and folders two, so that the same
//! entries always make the same bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// The newc magic (no checksum).
pub const MAGIC: &[u8; 6] = b"070701";
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;

/// File type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
/// A regular file.
pub const S_IFREG: u32 = 0o100000;
/// A folder.
pub const S_IFDIR: u32 = 0o040000;
/// A symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// A character device.
pub const S_IFCHR: u32 = 0o020000;
/// A block device.
pub const S_IFBLK: u32 = 0o060000;

/// An error building or reading a cpio archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// A path that is empty, climbs out with `..` or has an empty or `.`
    /// component in the middle.
    #[error("invalid archive path {0:?}")]
    InvalidPath(String),
    /// A path is already there as something that cannot be replaced (a
    /// folder by a non-folder or the other way round, or a file used as a
    /// parent folder).
    #[error("{path}: already in the archive as {existing}")]
    Conflict {
        /// The path added.
        path: String,
        /// What is there.
        existing: &'static str,
    },
    /// The archive is malformed.
    #[error("malformed cpio archive at byte {offset}: {reason}")]
    Malformed {
        /// Where in the input.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Writing failed.
    #[error("writing the cpio archive")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File(Vec<u8>),
    Dir { implicit: bool },
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

impl Kind {
    fn describe(&self) -> &'static str {
        match self {
            Kind::File(_) => "a file",
            Kind::Dir { .. } => "a folder",
            Kind::Symlink(_) => "a symbolic link",
            Kind::CharDev { .. } => "a character device",
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    mode: u32,
    mtime: u64,
    kind: Kind,
}

/// A cpio newc archive being built.
#[derive(Debug, Clone)]
pub struct Cpio {
    epoch: u64,
    entries: BTreeMap<String, Node>,
}

impl Default for Cpio {
    fn default() -> Self {
        Self::new()
    }
}

/// `SOURCE_DATE_EPOCH` from the environment, 0 where unset or not a number.
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `/a/./b/` → `a/b`; rejects empty paths, `..` and empty inner components.
fn normalize(path: &str) -> Result<String, CpioError> {
    let trimmed = path.trim_start_matches("./").trim_start_matches('/');
    let trimmed = trimmed.trim_end_matches('/');
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "." => {}
            "" | ".." => return Err(CpioError::InvalidPath(path.to_owned())),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(CpioError::InvalidPath(path.to_owned()));
    }
    Ok(parts.join("/"))
}

impl Cpio {
    /// An empty archive whose mtimes are clamped to `SOURCE_DATE_EPOCH`.
    pub fn new() -> Self {
        Self::with_epoch(source_date_epoch())
    }

    /// An empty archive whose mtimes are clamped to `epoch`.
    pub fn with_epoch(epoch: u64) -> Self {
        Self {
            epoch,
            entries: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a regular file; `mode` is its permission bits.
    pub fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), CpioError> {
        self.insert(path, mode & 0o7777, Kind::File(data.into()))
    }

    /// Adds a folder (or sets the mode of one that is there).
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.insert(path, mode & 0o7777, Kind::Dir { implicit: false })
    }

    /// Adds (or replaces) a symbolic link to `target`.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.insert(path, 0o777, Kind::Symlink(target.to_owned()))
    }

    /// Adds (or replaces) a character device node, e.g. `/dev/console` 5:1.
    pub fn add_char_dev(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(path, mode & 0o7777, Kind::CharDev { major, minor })
    }

    /// Sets an entry's mtime, clamped to the epoch.
    pub fn set_mtime(&mut self, path: &str, mtime: u64) -> Result<(), CpioError> {
        let key = normalize(path)?;
        let epoch = self.epoch;
        let node = self
            .entries
            .get_mut(&key)
            .ok_or(CpioError::InvalidPath(path.to_owned()))?;
        node.mtime = mtime.min(epoch);
        Ok(())
    }

    /// Whether `path` is in the archive (added or implied).
    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|k| self.entries.contains_key(&k))
    }

    /// The paths in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The number of entries (without the trailer).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The total size of the files' contents.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|n| match &n.kind {
                Kind::File(d) => d.len() as u64,
                _ => 0,
            })
            .sum()
    }

    fn insert(&mut self, path: &str, mode: u32, kind: Kind) -> Result<(), CpioError> {
        let key = normalize(path)?;
        // Parents first: each must be (or become) a folder.
        let mut at = 0;
        while let Some(slash) = key[at..].find('/') {
            let parent = &key[..at + slash];
            match self.entries.get(parent) {
                Some(Node {
                    kind: Kind::Dir { .. },
                    ..
                }) => {}
                Some(other) => {
                    return Err(CpioError::Conflict {
                        path: parent.to_owned(),
                        existing: other.kind.describe(),
                    });
                }
                None => {
                    self.entries.insert(
                        parent.to_owned(),
                        Node {
                            mode: 0o755,
                            mtime: self.epoch,
                            kind: Kind::Dir { implicit: true },
                        },
                    );
                }
            }
            at += slash + 1;
        }
        let is_dir = matches!(kind, Kind::Dir { .. });
        if let Some(existing) = self.entries.get(&key) {
            let was_dir = matches!(existing.kind, Kind::Dir { .. });
            if was_dir != is_dir {
                return Err(CpioError::Conflict {
                    path: key,
                    existing: existing.kind.describe(),
                });
            }
        }
        self.entries.insert(
            key,
            Node {
                mode,
                mtime: self.epoch,
                kind,
            },
        );
        Ok(())
    }

    /// Writes the archive, trailer included, padded to 4 bytes.
    pub fn write<W: Write>(&self, out: &mut W) -> Result<(), CpioError> {
        let mut w = CountingWriter { inner: out, n: 0 };
        for (index, (path, node)) in self.entries.iter().enumerate() {
            let ino = u32::try_from(index + 1).map_err(|_| CpioError::InvalidPath(path.clone()))?;
            let (type_bits, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &node.kind {
                Kind::File(d) => (S_IFREG, 1, d, (0, 0)),
                Kind::Dir { .. } => (S_IFDIR, 2, &[], (0, 0)),
                Kind::Symlink(t) => (S_IFLNK, 1, t.as_bytes(), (0, 0)),
                Kind::CharDev { major, minor } => (S_IFCHR, 1, &[], (*major, *minor)),
            };
            let header = Header {
                ino,
                mode: type_bits | node.mode,
                nlink,
                mtime: node.mtime.min(self.epoch),
                rdev,
            };
            header.write(&mut w, path, data)?;
        }
        Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            rdev: (0, 0),
        }
        .write(&mut w, TRAILER, &[])?;
        Ok(())
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CpioError> {
        let mut out = Vec::with_capacity(self.content_bytes() as usize + 128 * self.len() + 256);
        self.write(&mut out)?;
        Ok(out)
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    n: usize,
}

impl<W: Write> CountingWriter<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.n += bytes.len();
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - self.n % 4) % 4;
        self.put(&[0u8; 3][..pad])
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u64,
    rdev: (u32, u32),
}

impl Header {
    fn write<W: Write>(
        &self,
        w: &mut CountingWriter<'_, W>,
        name: &str,
        data: &[u8],
    ) -> Result<(), CpioError> {
        let too_big = || CpioError::InvalidPath(name.to_owned());
        let size = u32::try_from(data.len()).map_err(|_| too_big())?;
        let namesize = u32::try_from(name.len() + 1).map_err(|_| too_big())?;
        // newc stores 32-bit mtimes; later ones are clamped too.
        let mtime = u32::try_from(self.mtime).unwrap_or(u32::MAX);
        let fields = [
            self.ino,
            self.mode,
            0,
            0,
            self.nlink,
            mtime,
            size,
            0,
            0,
            self.rdev.0,
            self.rdev.1,
            namesize,
            0,
        ];
        let mut head = Vec::with_capacity(HEADER_LEN);
        head.extend_from_slice(MAGIC);
        for f in fields {
            head.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        w.put(&head)?;
        w.put(name.as_bytes())?;
        w.put(&[0])?;
        w.pad4()?;
        w.put(data)?;
        w.pad4()?;
        Ok(())
    }
}

/// One entry read from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as stored (no leading `/` added or removed).
    pub name: &'a str,
    /// The inode number.
    pub ino: u32,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time.
    pub mtime: u32,
    /// Device major number of a device node.
    pub rdev_major: u32,
    /// Device minor number of a device node.
    pub rdev_minor: u32,
    /// The contents (a symbolic link's target).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// The type bits of `mode`.
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type() == S_IFREG
    }

    /// Whether this is a folder.
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }

    /// A symbolic link's target.
    pub fn symlink_target(&self) -> Option<&str> {
        (self.file_type() == S_IFLNK)
            .then(|| std::str::from_utf8(self.data).ok())
            .flatten()
    }
}

fn hex_field(bytes: &[u8], offset: usize, index: usize) -> Result<u32, CpioError> {
    let start = 6 + index * 8;
    let text = std::str::from_utf8(&bytes[start..start + 8]).ok();
    text.and_then(|t| u32::from_str_radix(t, 16).ok())
        .ok_or_else(|| CpioError::Malformed {
            offset: offset + start,
            reason: format!("header field {index} is not 8 hex digits"),
        })
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Reads the entries of one newc archive up to its trailer (which is not
/// returned). Bytes after the trailer are ignored; see [`read_archive`] for
/// where they start.
pub fn read_entries(bytes: &[u8]) -> Result<Vec<Entry<'_>>, CpioError> {
    read_archive(bytes).map(|(entries, _)| entries)
}

/// Reads one newc archive; returns its entries and the offset just past the
/// trailer's padding (where a concatenated archive would start).
pub fn read_archive(bytes: &[u8]) -> Result<(Vec<Entry<'_>>, usize), CpioError> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    loop {
        let malformed = |offset: usize, reason: &str| CpioError::Malformed {
            offset,
            reason: reason.to_owned(),
        };
        let head = bytes
            .get(at..at + HEADER_LEN)
            .ok_or_else(|| malformed(at, "truncated header (no trailer)"))?;
        if &head[..6] != MAGIC {
            return Err(malformed(at, "bad magic (not a newc archive)"));
        }
        let start = at;
        let f = |i| hex_field(head, start, i);
        let namesize = f(11)? as usize;
        let filesize = f(6)? as usize;
        if namesize == 0 {
            return Err(malformed(at, "empty name"));
        }
        let name_start = at + HEADER_LEN;
        let name_end = name_start
            .checked_add(namesize)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| malformed(name_start, "name runs past the end"))?;
        let name_bytes = &bytes[name_start..name_end];
        if name_bytes.last() != Some(&0) {
            return Err(malformed(name_start, "name is not NUL-terminated"));
        }
        let name = std::str::from_utf8(&name_bytes[..namesize - 1])
            .map_err(|_| malformed(name_start, "name is not UTF-8"))?;
        let data_start = align4(name_end);
        let data_end = data_start
            .checked_add(filesize)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| malformed(data_start, "contents run past the end"))?;
        at = align4(data_end).min(bytes.len());
        if name == TRAILER {
            return Ok((entries, at));
        }
        entries.push(Entry {
            name,
            ino: f(0)?,
            mode: f(1)?,
            uid: f(2)?,
            gid: f(3)?,
            nlink: f(4)?,
            mtime: f(5)?,
            rdev_major: f(9)?,
            rdev_minor: f(10)?,
            data: &bytes[data_start..data_end],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(epoch: u64) -> Cpio {
        let mut c = Cpio::with_epoch(epoch);
        c.add_file("/init", 0o755, b"#!/bin/sh\n".to_vec()).unwrap();
        c.add_char_dev("/dev/console", 0o600, 5, 1).unwrap();
        c.add_char_dev("/dev/null", 0o666, 1, 3).unwrap();
        c.add_file(
            "lib/modules/6.1.0/kernel/fs/9p/9p.ko",
            0o644,
            vec![7u8; 1001],
        )
        .unwrap();
        c.add_symlink("bin/sh", "busybox").unwrap();
        c.add_dir("tmp", 0o1777).unwrap();
        c.add_file("./etc/empty", 0o644, Vec::new()).unwrap();
        c
    }

    #[test]
    fn round_trip() {
        let c = sample(1_700_000_000);
        let bytes = c.to_bytes().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = read_entries(&bytes).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "dev",
                "dev/console",
                "dev/null",
                "etc",
                "etc/empty",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.1.0",
                "lib/modules/6.1.0/kernel",
                "lib/modules/6.1.0/kernel/fs",
                "lib/modules/6.1.0/kernel/fs/9p",
                "lib/modules/6.1.0/kernel/fs/9p/9p.ko",
                "tmp",
            ]
        );
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.ino as usize, i + 1, "inodes in order");
            assert_eq!((e.uid, e.gid), (0, 0));
            assert_eq!(e.mtime, 1_700_000_000);
            assert_eq!(e.nlink, if e.is_dir() { 2 } else { 1 }, "{}", e.name);
        }
        let by_name = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(by_name("init").mode, S_IFREG | 0o755);
        assert_eq!(by_name("init").data, b"#!/bin/sh\n");
        assert_eq!(by_name("bin").mode, S_IFDIR | 0o755, "implicit parent");
        assert_eq!(by_name("tmp").mode, S_IFDIR | 0o1777);
        assert_eq!(by_name("bin/sh").symlink_target(), Some("busybox"));
        let console = by_name("dev/console");
        assert_eq!(console.mode, S_IFCHR | 0o600);
        assert_eq!((console.rdev_major, console.rdev_minor), (5, 1));
        let null = by_name("dev/null");
        assert_eq!((null.rdev_major, null.rdev_minor), (1, 3));
        assert_eq!(
            by_name("lib/modules/6.1.0/kernel/fs/9p/9p.ko").data.len(),
            1001
        );
    }

    #[test]
    fn deterministic_and_order_independent() {
        let a = sample(0).to_bytes().unwrap();
        let b = sample(0).to_bytes().unwrap();
        assert_eq!(a, b);
        let mut c = Cpio::with_epoch(0);
        c.add_file("./etc/empty", 0o644, Vec::new()).unwrap();
        c.add_dir("tmp", 0o1777).unwrap();
        c.add_symlink("bin/sh", "busybox").unwrap();
        c.add_file(
            "lib/modules/6.1.0/kernel/fs/9p/9p.ko",
            0o644,
            vec![7u8; 1001],
        )
        .unwrap();
        c.add_char_dev("/dev/null", 0o666, 1, 3).unwrap();
        c.add_char_dev("/dev/console", 0o600, 5, 1).unwrap();
        c.add_file("/init", 0o755, b"#!/bin/sh\n".to_vec()).unwrap();
        assert_eq!(c.to_bytes().unwrap(), a);
    }

    #[test]
    fn mtimes_are_clamped() {
        let mut c = Cpio::with_epoch(100);
        c.add_file("a", 0o644, b"x".to_vec()).unwrap();
        c.add_file("b", 0o644, b"y".to_vec()).unwrap();
        c.set_mtime("a", 50).unwrap();
        c.set_mtime("b", 5000).unwrap();
        let bytes = c.to_bytes().unwrap();
        let e = read_entries(&bytes).unwrap();
        assert_eq!((e[0].mtime, e[1].mtime), (50, 100));
    }

    #[test]
    fn rejects_bad_paths_and_conflicts() {
        let mut c = Cpio::with_epoch(0);
        for bad in ["", "/", "a/../b", "..", "a//b"] {
            assert!(
                matches!(c.add_dir(bad, 0o755), Err(CpioError::InvalidPath(_))),
                "{bad:?}"
            );
        }
        c.add_file("f", 0o644, b"x".to_vec()).unwrap();
        assert!(matches!(
            c.add_file("f/g", 0o644, Vec::new()),
            Err(CpioError::Conflict { .. })
        ));
        assert!(matches!(
            c.add_dir("f", 0o755),
            Err(CpioError::Conflict { .. })
        ));
        c.add_file("f", 0o600, b"replaced".to_vec()).unwrap();
        c.add_dir("d/e", 0o700).unwrap();
        assert!(matches!(
            c.add_symlink("d", "x"),
            Err(CpioError::Conflict { .. })
        ));
    }

    #[test]
    fn reader_checks_bounds() {
        let bytes = sample(0).to_bytes().unwrap();
        for cut in [0, 5, 109, 120, bytes.len() - 130, bytes.len() - 4] {
            assert!(read_entries(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = b'x';
        assert!(read_entries(&bad).is_err());
        let mut bad = bytes.clone();
        bad[6 + 11 * 8] = b'z'; // namesize field
        assert!(read_entries(&bad).is_err());
        let mut huge = bytes.clone();
        huge[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"7fffffff"); // filesize
        assert!(read_entries(&huge).is_err());
        // A second archive after the first: read_archive says where it starts.
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        let (entries, end) = read_archive(&two).unwrap();
        assert_eq!(end, bytes.len());
        assert_eq!(read_entries(&two[end..]).unwrap(), entries);
    }

    #[test]
    fn gnu_cpio_lists_it() {
        let Ok(out) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("cpio is not installed: skipping");
            return;
        };
        let mut child = out;
        let bytes = sample(0).to_bytes().unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let ours: Vec<String> = sample(0).paths().map(str::to_owned).collect();
        assert_eq!(listed, ours);
    }
}
