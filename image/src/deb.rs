//! Reading Debian binary packages (`.deb`) without dpkg.
//!
//! A .deb is an `ar` archive of `debian-binary` ("2.0\n"), `control.tar[.*]`
//! and `data.tar[.*]`, the tar members compressed with xz, zstd, gzip or not
//! at all. Paths inside are relative (`./usr/bin/x`); this module hands them
//! out without the `./` and refuses absolute paths and `..`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::compression::Compression;

/// An error reading or extracting a .deb.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The file could not be opened.
    #[error("opening {path}")]
    Open {
        /// The .deb.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The outer `ar` archive could not be read.
    #[error("{path}: reading the ar archive")]
    Ar {
        /// The .deb.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not a Debian binary package.
    #[error("{path}: not a Debian binary package: {reason}")]
    NotDeb {
        /// The .deb.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A member compressed with a method this crate does not read.
    #[error("{path}: {member} is compressed with a method this builder does not read")]
    UnsupportedCompression {
        /// The .deb.
        path: PathBuf,
        /// The member name.
        member: String,
    },
    /// A tar member could not be read.
    #[error("{path}: reading {member}")]
    Tar {
        /// The .deb.
        path: PathBuf,
        /// The member name.
        member: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The control file is missing or malformed.
    #[error("{path}: control file: {reason}")]
    Control {
        /// The .deb.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An entry's path is absolute or climbs out with `..`.
    #[error("{path}: refusing the unsafe path {entry:?} in {member}")]
    UnsafePath {
        /// The .deb.
        path: PathBuf,
        /// The member name.
        member: String,
        /// The entry's path as stored.
        entry: String,
    },
    /// An entry would be written through a symbolic link that an earlier
    /// entry created.
    #[error("refusing to extract {entry} through the symbolic link {link}")]
    ThroughSymlink {
        /// The entry's path in the package.
        entry: PathBuf,
        /// The symbolic link on the way.
        link: PathBuf,
    },
    /// Writing an entry to disk failed.
    #[error("extracting {entry} to {dest}")]
    Extract {
        /// The entry's path in the package.
        entry: PathBuf,
        /// Where it was going.
        dest: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The fields of a package's `control` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    fields: Vec<(String, String)>,
}

impl Control {
    /// Parses a control paragraph (RFC 822 style; continuation lines start
    /// with a space or a tab and are joined with `\n`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                if fields.is_empty() {
                    continue;
                }
                break; // one paragraph only
            }
            if line.starts_with([' ', '\t']) {
                let Some((_, value)) = fields.last_mut() else {
                    return Err(format!("line {}: continuation without a field", n + 1));
                };
                value.push('\n');
                value.push_str(line.trim());
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("line {}: expected 'Field: value'", n + 1));
            };
            fields.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let control = Self { fields };
        for required in ["Package", "Version", "Architecture"] {
            if control.get(required).is_none() {
                return Err(format!("no {required} field"));
            }
        }
        Ok(control)
    }

    /// A field's value (field names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Package`.
    pub fn package(&self) -> &str {
        self.get("Package").unwrap_or_default()
    }

    /// `Version`.
    pub fn version(&self) -> &str {
        self.get("Version").unwrap_or_default()
    }

    /// `Architecture`.
    pub fn architecture(&self) -> &str {
        self.get("Architecture").unwrap_or_default()
    }

    /// The source package's name: `Source` without its `(version)`, or
    /// `Package` where there is no `Source`.
    pub fn source_package(&self) -> &str {
        self.get("Source")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| self.package())
    }

    /// The source package's version: from `Source: name (version)`, else
    /// the binary's `Version`.
    pub fn source_version(&self) -> &str {
        self.get("Source")
            .and_then(|s| s.split_once('('))
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(v, _)| v.trim())
            .unwrap_or_else(|| self.version())
    }

    /// `Depends`, as written (alternatives and version constraints kept).
    pub fn depends(&self) -> Option<&str> {
        self.get("Depends")
    }

    /// Every field in file order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// An opened .deb. Every read opens the file anew, so a `Deb` is cheap to
/// keep around.
#[derive(Debug, Clone)]
pub struct Deb {
    path: PathBuf,
    control_member: String,
    data_member: String,
}

/// What [`Deb::extract_to`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Every path written, relative to the destination, in archive order.
    pub paths: Vec<PathBuf>,
    /// Entries that cannot be made without privileges (device nodes, FIFOs)
    /// and were skipped.
    pub skipped: Vec<PathBuf>,
}

impl Deb {
    /// Opens a .deb and checks its outer structure.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DebError> {
        let path = path.as_ref().to_path_buf();
        let mut archive = ar::Archive::new(open_file(&path)?);
        let mut names = Vec::new();
        while let Some(entry) = archive.next_entry() {
            let mut entry = entry.map_err(|source| DebError::Ar {
                path: path.clone(),
                source,
            })?;
            let name = member_name(entry.header().identifier());
            if names.is_empty() {
                if name != "debian-binary" {
                    return Err(not_deb(&path, format!("first member is {name:?}")));
                }
                let mut version = String::new();
                entry
                    .by_ref()
                    .take(16)
                    .read_to_string(&mut version)
                    .map_err(|source| DebError::Ar {
                        path: path.clone(),
                        source,
                    })?;
                if !version.starts_with("2.") {
                    return Err(not_deb(&path, format!("format {:?}", version.trim())));
                }
            }
            names.push(name);
        }
        let find = |prefix: &str| {
            names
                .iter()
                .find(|n| n.as_str() == prefix || n.starts_with(&format!("{prefix}.")))
                .cloned()
                .ok_or_else(|| not_deb(&path, format!("no {prefix} member")))
        };
        let control_member = find("control.tar")?;
        let data_member = find("data.tar")?;
        Ok(Self {
            path,
            control_member,
            data_member,
        })
    }

    /// The .deb's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The package's control fields.
    pub fn control(&self) -> Result<Control, DebError> {
        let mut text = None;
        self.for_each_entry(&self.control_member, |path, _, reader| {
            if path == Path::new("control") {
                let mut s = String::new();
                reader
                    .read_to_string(&mut s)
                    .map_err(|source| DebError::Tar {
                        path: self.path.clone(),
                        member: self.control_member.clone(),
                        source,
                    })?;
                text = Some(s);
            }
            Ok::<(), DebError>(())
        })?;
        let text = text.ok_or_else(|| DebError::Control {
            path: self.path.clone(),
            reason: "no ./control in control.tar".into(),
        })?;
        Control::parse(&text).map_err(|reason| DebError::Control {
            path: self.path.clone(),
            reason,
        })
    }

    /// Calls `f` with every entry of `data.tar` in archive order: its path
    /// (relative, without `./`; the root entry is left out), its tar header
    /// and a reader of its contents. An absolute or `..` path is an error.
    pub fn for_each_data_entry<E, F>(&self, f: F) -> Result<(), E>
    where
        E: From<DebError>,
        F: FnMut(&Path, &tar::Header, &mut dyn Read) -> Result<(), E>,
    {
        self.for_each_entry(&self.data_member, f)
    }

    /// Extracts the data entries whose path `filter` accepts into `dir`
    /// (created if missing). Symbolic links stay symbolic links (their
    /// targets are not checked, never followed); nothing is written through
    /// a symbolic link; hard links become hard links within `dir`; device
    /// nodes and FIFOs are skipped. Files keep their permission bits
    /// without set-id bits; directories stay writable by their owner.
    pub fn extract_to(
        &self,
        dir: impl AsRef<Path>,
        mut filter: impl FnMut(&Path) -> bool,
    ) -> Result<Extracted, DebError> {
        let dir = dir.as_ref();
        let mut out = Extracted::default();
        fs::create_dir_all(dir).map_err(|source| DebError::Extract {
            entry: PathBuf::new(),
            dest: dir.to_path_buf(),
            source,
        })?;
        self.for_each_data_entry(|rel, header, reader| {
            if !filter(rel) {
                return Ok(());
            }
            if extract_entry(&self.path, &self.data_member, dir, rel, header, reader)? {
                out.paths.push(rel.to_path_buf());
            } else {
                out.skipped.push(rel.to_path_buf());
            }
            Ok::<(), DebError>(())
        })?;
        Ok(out)
    }

    fn for_each_entry<E, F>(&self, member: &str, mut f: F) -> Result<(), E>
    where
        E: From<DebError>,
        F: FnMut(&Path, &tar::Header, &mut dyn Read) -> Result<(), E>,
    {
        let tar_err = |source| DebError::Tar {
            path: self.path.clone(),
            member: member.to_owned(),
            source,
        };
        let mut archive = ar::Archive::new(open_file(&self.path)?);
        while let Some(entry) = archive.next_entry() {
            let entry = entry.map_err(|source| DebError::Ar {
                path: self.path.clone(),
                source,
            })?;
            if member_name(entry.header().identifier()) != member {
                continue;
            }
            let method = Compression::from_file_name(member).ok_or_else(|| {
                DebError::UnsupportedCompression {
                    path: self.path.clone(),
                    member: member.to_owned(),
                }
            })?;
            let decoder = method.decoder(BufReader::new(entry)).map_err(tar_err)?;
            let mut tar = tar::Archive::new(decoder);
            for item in tar.entries().map_err(tar_err)? {
                let mut item = item.map_err(tar_err)?;
                let raw = String::from_utf8_lossy(&item.path_bytes()).into_owned();
                let rel = safe_relative(&raw).ok_or_else(|| DebError::UnsafePath {
                    path: self.path.clone(),
                    member: member.to_owned(),
                    entry: raw.clone(),
                })?;
                if rel.as_os_str().is_empty() {
                    continue;
                }
                let header = item.header().clone();
                f(&rel, &header, &mut item)?;
            }
            return Ok(());
        }
        Err(not_deb(&self.path, format!("no {member} member")).into())
    }
}

fn open_file(path: &Path) -> Result<BufReader<File>, DebError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| DebError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn not_deb(path: &Path, reason: String) -> DebError {
    DebError::NotDeb {
        path: path.to_path_buf(),
        reason,
    }
}

/// An ar member name without the GNU trailing `/`.
fn member_name(identifier: &[u8]) -> String {
    let name = String::from_utf8_lossy(identifier);
    name.trim_end_matches('/').trim().to_owned()
}

/// `./usr/bin/x` → `usr/bin/x`; `None` for absolute paths and `..`.
pub fn safe_relative(raw: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Fails where an existing ancestor of `rel` below `dir` is a symlink.
fn check_no_symlink_on_the_way(dir: &Path, rel: &Path) -> Result<(), DebError> {
    let mut at = dir.to_path_buf();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for component in parent.components() {
        at.push(component);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(DebError::ThroughSymlink {
                    entry: rel.to_path_buf(),
                    link: at,
                });
            }
            Ok(_) => {}
            Err(_) => break, // nothing further exists yet
        }
    }
    Ok(())
}

/// Removes whatever non-directory sits at `dest`, so it can be replaced.
fn remove_non_dir(dest: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if !meta.is_dir() => fs::remove_file(dest),
        _ => Ok(()),
    }
}

/// Writes one entry; `Ok(false)` where it was skipped.
fn extract_entry(
    deb: &Path,
    member: &str,
    dir: &Path,
    rel: &Path,
    header: &tar::Header,
    reader: &mut dyn Read,
) -> Result<bool, DebError> {
    check_no_symlink_on_the_way(dir, rel)?;
    let dest = dir.join(rel);
    let io_err = |source| DebError::Extract {
        entry: rel.to_path_buf(),
        dest: dest.clone(),
        source,
    };
    let mode = header.mode().map_err(io_err)? & 0o777;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err)?;
    }
    let kind = header.entry_type();
    match kind {
        tar::EntryType::Directory => {
            fs::create_dir_all(&dest).map_err(io_err)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode | 0o700)).map_err(io_err)?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            remove_non_dir(&dest).map_err(io_err)?;
            let mut file = File::create(&dest).map_err(io_err)?;
            io::copy(reader, &mut file).map_err(io_err)?;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_err)?;
        }
        tar::EntryType::Symlink => {
            let target = header
                .link_name()
                .map_err(io_err)?
                .ok_or_else(|| io_err(io::Error::other("symbolic link without a target")))?;
            remove_non_dir(&dest).map_err(io_err)?;
            std::os::unix::fs::symlink(&target, &dest).map_err(io_err)?;
        }
        tar::EntryType::Link => {
            let raw = header
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let target = safe_relative(&raw)
                .filter(|t| !t.as_os_str().is_empty())
                .ok_or_else(|| DebError::UnsafePath {
                    path: deb.to_path_buf(),
                    member: member.to_owned(),
                    entry: raw.clone(),
                })?;
            check_no_symlink_on_the_way(dir, &target)?;
            remove_non_dir(&dest).map_err(io_err)?;
            fs::hard_link(dir.join(&target), &dest).map_err(io_err)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The control fields of every .deb in a folder, by package name (for
/// manifests and checks). Files that are not .debs are ignored.
pub fn scan_dir(dir: impl AsRef<Path>) -> Result<BTreeMap<String, (PathBuf, Control)>, DebError> {
    let dir = dir.as_ref();
    let mut out = BTreeMap::new();
    let entries = fs::read_dir(dir).map_err(|source| DebError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    paths.sort();
    for path in paths {
        let control = Deb::open(&path)?.control()?;
        out.insert(control.package().to_owned(), (path, control));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// How a test member is compressed.
    #[derive(Clone, Copy)]
    pub(crate) enum Method {
        None,
        Gzip,
        Xz,
        Zstd,
    }

    impl Method {
        fn suffix(self) -> &'static str {
            match self {
                Method::None => "",
                Method::Gzip => ".gz",
                Method::Xz => ".xz",
                Method::Zstd => ".zst",
            }
        }

        fn compress(self, data: &[u8]) -> Vec<u8> {
            match self {
                Method::None => data.to_vec(),
                Method::Gzip => {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(data).unwrap();
                    e.finish().unwrap()
                }
                Method::Xz => crate::xz::compress_xz_crc32(data, 1).unwrap(),
                Method::Zstd => zstd::encode_all(data, 3).unwrap(),
            }
        }
    }

    /// An entry of a test data.tar.
    pub(crate) enum TestEntry<'a> {
        Dir(&'a str),
        File(&'a str, u32, &'a [u8]),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        /// A path written into the header as it is (no checks).
        RawFile(&'a str, &'a [u8]),
    }

    pub(crate) fn tar_of(entries: &[TestEntry<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match *e {
                TestEntry::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                TestEntry::File(p, mode, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, data).unwrap();
                }
                TestEntry::Symlink(p, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                TestEntry::HardLink(p, target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                TestEntry::RawFile(p, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(data.len() as u64);
                    let name = &mut h.as_old_mut().name;
                    name[..p.len()].copy_from_slice(p.as_bytes());
                    h.set_cksum();
                    b.append(&h, data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// Writes a .deb with the given control text and data entries.
    pub(crate) fn write_deb(
        path: &Path,
        control: &str,
        data: &[TestEntry<'_>],
        method: Method,
    ) -> PathBuf {
        let control_tar = tar_of(&[
            TestEntry::Dir("./"),
            TestEntry::File("./control", 0o644, control.as_bytes()),
        ]);
        let data_tar = tar_of(data);
        let mut ar = ar::Builder::new(File::create(path).unwrap());
        let members = [
            ("debian-binary".to_owned(), b"2.0\n".to_vec()),
            (
                format!("control.tar{}", method.suffix()),
                method.compress(&control_tar),
            ),
            (
                format!("data.tar{}", method.suffix()),
                method.compress(&data_tar),
            ),
        ];
        for (name, bytes) in members {
            let header = ar::Header::new(name.into_bytes(), bytes.len() as u64);
            ar.append(&header, &bytes[..]).unwrap();
        }
        path.to_path_buf()
    }

    const CONTROL: &str = "Package: osam-test\nVersion: 1.2-3\nArchitecture: amd64\n\
Source: osam-src (1.2-2)\nDepends: libc6 (>= 2.36), busybox | toybox\n\
Description: a test\n a longer\n .\n description\n";

    fn sample_data() -> Vec<TestEntry<'static>> {
        vec![
            TestEntry::Dir("./"),
            TestEntry::Dir("./usr/"),
            TestEntry::Dir("./usr/bin/"),
            TestEntry::File("./usr/bin/tool", 0o4755, b"#!/bin/sh\necho tool\n"),
            TestEntry::Symlink("./usr/bin/alias", "tool"),
            TestEntry::Symlink("./usr/bin/abs", "/usr/bin/tool"),
            TestEntry::HardLink("./usr/bin/hard", "./usr/bin/tool"),
            TestEntry::File(
                "./usr/share/doc/osam-test/copyright",
                0o644,
                b"Apache-2.0\n",
            ),
        ]
    }

    #[test]
    fn reads_control_with_every_compression() {
        let tmp = tempfile::tempdir().unwrap();
        for method in [Method::None, Method::Gzip, Method::Xz, Method::Zstd] {
            let path = tmp.path().join(format!("t{}.deb", method.suffix()));
            write_deb(&path, CONTROL, &sample_data(), method);
            let deb = Deb::open(&path).unwrap();
            let c = deb.control().unwrap();
            assert_eq!(c.package(), "osam-test");
            assert_eq!(c.version(), "1.2-3");
            assert_eq!(c.architecture(), "amd64");
            assert_eq!(c.source_package(), "osam-src");
            assert_eq!(c.source_version(), "1.2-2");
            assert_eq!(c.depends(), Some("libc6 (>= 2.36), busybox | toybox"));
            assert_eq!(
                c.get("description"),
                Some("a test\na longer\n.\ndescription")
            );

            let mut seen = Vec::new();
            deb.for_each_data_entry(|p, h, r| {
                let mut body = Vec::new();
                r.read_to_end(&mut body).unwrap();
                seen.push((p.display().to_string(), h.entry_type(), body.len()));
                Ok::<_, DebError>(())
            })
            .unwrap();
            assert_eq!(seen.len(), 7, "{seen:?}");
            assert_eq!(
                seen[2],
                ("usr/bin/tool".into(), tar::EntryType::Regular, 20)
            );
        }
    }

    #[test]
    fn source_defaults_to_package() {
        let c = Control::parse("Package: a\nVersion: 1\nArchitecture: all\n").unwrap();
        assert_eq!(c.source_package(), "a");
        assert_eq!(c.source_version(), "1");
        assert!(Control::parse("Package: a\n").is_err());
        assert!(Control::parse(" cont\nPackage: a\n").is_err());
    }

    #[test]
    fn extracts_files_and_keeps_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let deb = write_deb(
            &tmp.path().join("t.deb"),
            CONTROL,
            &sample_data(),
            Method::Xz,
        );
        let out = tmp.path().join("out");
        let got = Deb::open(&deb)
            .unwrap()
            .extract_to(&out, |p| !p.starts_with("usr/share/doc"))
            .unwrap();
        assert_eq!(got.paths.len(), 6, "{got:?}");
        assert!(!out.join("usr/share").exists());
        let tool = out.join("usr/bin/tool");
        assert_eq!(fs::read(&tool).unwrap(), b"#!/bin/sh\necho tool\n");
        assert_eq!(
            fs::metadata(&tool).unwrap().permissions().mode() & 0o7777,
            0o755,
            "set-id bits dropped"
        );
        let alias = out.join("usr/bin/alias");
        assert!(
            fs::symlink_metadata(&alias)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_link(&alias).unwrap(), Path::new("tool"));
        assert_eq!(
            fs::read_link(out.join("usr/bin/abs")).unwrap(),
            Path::new("/usr/bin/tool")
        );
        assert_eq!(
            fs::read(out.join("usr/bin/hard")).unwrap(),
            fs::read(&tool).unwrap()
        );
    }

    #[test]
    fn refuses_parent_and_absolute_paths() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["./../evil", "/etc/evil", "./a/../../evil"] {
            let deb = write_deb(
                &tmp.path().join("bad.deb"),
                CONTROL,
                &[TestEntry::RawFile(bad, b"x")],
                Method::Gzip,
            );
            let out = tmp.path().join("out");
            let err = Deb::open(&deb)
                .unwrap()
                .extract_to(&out, |_| true)
                .unwrap_err();
            assert!(matches!(err, DebError::UnsafePath { .. }), "{bad}: {err}");
            assert!(!tmp.path().join("evil").exists());
        }
    }

    #[test]
    fn refuses_writing_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let target = outside.to_str().unwrap().to_owned();
        let deb = write_deb(
            &tmp.path().join("link.deb"),
            CONTROL,
            &[
                TestEntry::Symlink("./lib", &target),
                TestEntry::File("./lib/evil", 0o644, b"x"),
            ],
            Method::None,
        );
        let err = Deb::open(&deb)
            .unwrap()
            .extract_to(tmp.path().join("out"), |_| true)
            .unwrap_err();
        assert!(matches!(err, DebError::ThroughSymlink { .. }), "{err}");
        assert!(!outside.join("evil").exists());
    }

    #[test]
    fn rejects_non_debs() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.deb");
        let mut ar = ar::Builder::new(File::create(&path).unwrap());
        ar.append(&ar::Header::new(b"hello".to_vec(), 2), &b"hi"[..])
            .unwrap();
        drop(ar);
        assert!(matches!(Deb::open(&path), Err(DebError::NotDeb { .. })));
        fs::write(&path, b"not an archive").unwrap();
        assert!(Deb::open(&path).is_err());
    }

    #[test]
    fn scans_a_folder() {
        let tmp = tempfile::tempdir().unwrap();
        write_deb(
            &tmp.path().join("a.deb"),
            CONTROL,
            &sample_data(),
            Method::Zstd,
        );
        fs::write(tmp.path().join("SHA256SUMS"), "x").unwrap();
        let all = scan_dir(tmp.path()).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["osam-test"]);
    }
}
