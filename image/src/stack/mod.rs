//! The fixup stack's initramfs contents: PID 1 and `fixupctl`, busybox as
//! the rescue shell, the storage tools (LVM, device-mapper, mdadm, ext4,
//! XFS, btrfs), VMware Tools' `vmtoolsd` with its plugins, and the shared
//! library closure of all of them, taken from the pinned Debian packages.
//!
//! [`stack_pins`] picks the stack's packages out of `image/pins.txt` (the
//! pins marked `# root` and the generated closure block), [`InputSet`]
//! extracts them, [`stack_contents`] selects the files. The library closure
//! is read from the ELF files themselves (`PT_INTERP`, `DT_NEEDED`,
//! `DT_RUNPATH`) plus what is loaded at run time and never named there:
//! vmtoolsd's plugins and the NSS `files` module. Nothing else goes in.
//!
//! Left out on purpose: PAM (vmtoolsd does not link it; only guest
//! operations authentication would `dlopen` it, and the stack does not
//! authenticate guest operations), dmeventd (the stack does not monitor
//! LVM), the tools' helper scripts' interpreters (perl, python), and the
//! maintainer-script machinery (see `scripts/update-pins.sh`).

pub mod elf;
pub mod manifest;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cpio::{Cpio, CpioError};
use crate::deb::{Deb, DebError};
use crate::pins::{self, Pin, PinsError};

/// The two stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StackArch {
    /// 64-bit PC (Debian `amd64`).
    X86_64,
    /// 32-bit PC (Debian `i386`).
    I686,
}

impl StackArch {
    /// Both stacks.
    pub const ALL: [StackArch; 2] = [StackArch::X86_64, StackArch::I686];

    /// The stack's name: `x86_64` or `i686`.
    pub fn name(self) -> &'static str {
        match self {
            StackArch::X86_64 => "x86_64",
            StackArch::I686 => "i686",
        }
    }

    /// The Debian architecture of its packages.
    pub fn debian_arch(self) -> &'static str {
        match self {
            StackArch::X86_64 => "amd64",
            StackArch::I686 => "i386",
        }
    }

    /// The multiarch triplet of its library folders.
    pub fn triplet(self) -> &'static str {
        match self {
            StackArch::X86_64 => "x86_64-linux-gnu",
            StackArch::I686 => "i386-linux-gnu",
        }
    }

    /// The folders the dynamic linker searches by default, in its order.
    pub fn library_dirs(self) -> [String; 4] {
        let t = self.triplet();
        [
            format!("lib/{t}"),
            format!("usr/lib/{t}"),
            "lib".to_owned(),
            "usr/lib".to_owned(),
        ]
    }
}

impl fmt::Display for StackArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error selecting the stack's contents.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A file or folder could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A package could not be read.
    #[error(transparent)]
    Deb(#[from] DebError),
    /// The pins file is malformed.
    #[error("{path}: {source}")]
    Pins {
        /// The pins file (or a description of where the text came from).
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: PinsError,
    },
    /// A pinned package is not in the cache folder.
    #[error("{path}: the pinned {package} is not in the cache (run scripts/fetch-inputs.sh)")]
    MissingDeb {
        /// Where it should be.
        path: PathBuf,
        /// The package.
        package: String,
    },
    /// A file the stack needs is in none of the packages.
    #[error("/{path} (wanted from {package}) is in none of the stack's packages")]
    MissingFile {
        /// The path in the stack.
        path: String,
        /// The package that should ship it.
        package: String,
    },
    /// A package the stack takes files from is not in the input set.
    #[error("the stack needs the package {0}, which is not in the input set")]
    MissingPackage(String),
    /// An ELF file could not be read or is built for another machine.
    #[error("{path}: {reason}")]
    Elf {
        /// The file (a path in the stack, or an input binary).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A library or interpreter an ELF file needs is in no package.
    #[error("/{file} needs {needed}, which none of the stack's packages has for {arch}")]
    Unresolved {
        /// The ELF file.
        file: String,
        /// The `DT_NEEDED` name or interpreter path.
        needed: String,
        /// The stack.
        arch: StackArch,
    },
    /// Symbolic links that go round in circles.
    #[error("too many levels of symbolic links resolving /{0}")]
    SymlinkLoop(String),
    /// Two different things at one path.
    #[error("/{path}: {first} and {second} both want it")]
    Conflict {
        /// The path.
        path: String,
        /// The first claimant.
        first: String,
        /// The second claimant.
        second: String,
    },
    /// Writing the archive failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

/// A `Result` with [`StackError`].
pub type Result<T, E = StackError> = std::result::Result<T, E>;

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StackError {
    let path = path.to_path_buf();
    move |source| StackError::Io {
        action,
        path,
        source,
    }
}

// --- the pins ---------------------------------------------------------------

/// The line that opens the generated closure block of the pins file.
pub const CLOSURE_BEGIN: &str = "# >>> closure";
/// The line that closes it.
pub const CLOSURE_END: &str = "# <<< closure";

/// A pin the stack takes files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackPin {
    /// The pinned package.
    pub pin: Pin,
    /// `true` for a tool (`# root`), `false` for a package of the closure.
    pub root: bool,
}

/// The stack's pins for one Debian architecture: the pins marked
/// `# root` (a trailing comment, so that the file stays three fields a
/// line for [`pins::parse`]) and the pins inside the closure block, of
/// that architecture or `all`. Kernel and GRUB pins are not among them.
pub fn stack_pins(text: &str, debian_arch: &str) -> Result<Vec<StackPin>, PinsError> {
    pins::parse(text)?;
    let mut out = Vec::new();
    let mut in_closure = false;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with(CLOSURE_BEGIN) {
            in_closure = true;
            continue;
        }
        if line.starts_with(CLOSURE_END) {
            in_closure = false;
            continue;
        }
        let (body, comment) = line.split_once('#').unwrap_or((line, ""));
        let root = comment.split_whitespace().next() == Some("root");
        if !(root || in_closure) {
            continue;
        }
        let Some(pin) = pins::parse(body)
            .map_err(|e| PinsError {
                line: n + 1,
                reason: e.reason,
            })?
            .pop()
        else {
            continue;
        };
        if pin.arch == debian_arch || pin.arch == "all" {
            out.push(StackPin { pin, root });
        }
    }
    Ok(out)
}

// --- the extracted packages -------------------------------------------------

/// One extracted package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPackage {
    /// Binary package name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its Debian architecture (`amd64`, `i386` or `all`).
    pub arch: String,
    /// The source package (control `Source:`, else the package itself).
    pub source: String,
    /// The source version.
    pub source_version: String,
    /// Where its data is extracted.
    pub root: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeKind {
    File,
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Node {
    package: String,
    kind: NodeKind,
}

/// The extracted packages of one stack, with an index of every file and
/// symbolic link in them (the first package by name wins a path that two
/// ship).
#[derive(Debug, Clone)]
pub struct InputSet {
    arch: StackArch,
    packages: BTreeMap<String, InputPackage>,
    index: BTreeMap<String, Node>,
}

/// Data that the stack never reads: documentation, manuals, translations.
fn wanted_data(path: &Path) -> bool {
    ![
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/lintian",
        "usr/share/bug",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

impl InputSet {
    /// Extracts the stack packages that `pins_text` pins for `arch` (see
    /// [`stack_pins`]) from `cache_dir` into `work_dir/<package>/`.
    pub fn extract(
        arch: StackArch,
        cache_dir: &Path,
        pins_text: &str,
        work_dir: &Path,
    ) -> Result<Self> {
        let pins =
            stack_pins(pins_text, arch.debian_arch()).map_err(|source| StackError::Pins {
                path: cache_dir.join("pins.txt"),
                source,
            })?;
        let mut packages = Vec::new();
        for StackPin { pin, .. } in pins {
            let path = cache_dir.join(pin.deb_file_name());
            if !path.is_file() {
                return Err(StackError::MissingDeb {
                    path,
                    package: pin.package,
                });
            }
            let deb = Deb::open(&path)?;
            let control = deb.control()?;
            let root = work_dir.join(&pin.package);
            if root.exists() {
                fs::remove_dir_all(&root).map_err(io_err("removing", &root))?;
            }
            deb.extract_to(&root, wanted_data)?;
            packages.push(InputPackage {
                name: control.package().to_owned(),
                version: control.version().to_owned(),
                arch: control.architecture().to_owned(),
                source: control.source_package().to_owned(),
                source_version: control.source_version().to_owned(),
                root,
            });
        }
        Self::from_packages(arch, packages)
    }

    /// An input set of packages already extracted (their `root` folders).
    pub fn from_packages(arch: StackArch, packages: Vec<InputPackage>) -> Result<Self> {
        let packages: BTreeMap<String, InputPackage> =
            packages.into_iter().map(|p| (p.name.clone(), p)).collect();
        let mut index = BTreeMap::new();
        for package in packages.values() {
            index_tree(&package.root, &package.root, &package.name, &mut index)?;
        }
        Ok(Self {
            arch,
            packages,
            index,
        })
    }

    /// The stack.
    pub fn arch(&self) -> StackArch {
        self.arch
    }

    /// The packages, by name.
    pub fn packages(&self) -> &BTreeMap<String, InputPackage> {
        &self.packages
    }

    /// The package that ships `path` (relative, no leading `/`).
    pub fn owner(&self, path: &str) -> Option<&str> {
        self.index.get(path).map(|n| n.package.as_str())
    }

    /// Resolves `path` through the symbolic links of the packages to a
    /// regular file: the file's path and the links passed on the way.
    /// `Ok(None)` where nothing is there.
    fn resolve(&self, path: &str) -> Result<Option<(String, Vec<String>)>> {
        let mut todo: VecDeque<String> = split(path).collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = Vec::new();
        while let Some(part) = todo.pop_front() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => done.push(part),
            }
            let here = done.join("/");
            match self.index.get(&here).map(|n| &n.kind) {
                Some(NodeKind::Symlink(target)) => {
                    if links.len() >= 40 {
                        return Err(StackError::SymlinkLoop(path.to_owned()));
                    }
                    links.push(here);
                    done.pop();
                    if target.starts_with('/') {
                        done.clear();
                    }
                    for part in split(target).collect::<Vec<_>>().into_iter().rev() {
                        todo.push_front(part);
                    }
                }
                Some(NodeKind::File) if todo.is_empty() => return Ok(Some((here, links))),
                Some(NodeKind::File) => return Ok(None),
                None => {}
            }
        }
        Ok(None)
    }

    fn source_path(&self, path: &str) -> Option<PathBuf> {
        let node = self.index.get(path)?;
        Some(self.packages.get(&node.package)?.root.join(path))
    }
}

fn split(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/').filter(|s| !s.is_empty()).map(str::to_owned)
}

fn index_tree(
    root: &Path,
    dir: &Path,
    package: &str,
    index: &mut BTreeMap<String, Node>,
) -> Result<()> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err("reading", dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_err("reading", dir))?;
    names.sort();
    for path in names {
        let meta = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let kind = if meta.is_dir() {
            index_tree(root, &path, package, index)?;
            continue;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(io_err("reading", &path))?;
            NodeKind::Symlink(target.to_string_lossy().into_owned())
        } else if meta.is_file() {
            NodeKind::File
        } else {
            continue;
        };
        index.entry(rel).or_insert(Node {
            package: package.to_owned(),
            kind,
        });
    }
    Ok(())
}

// --- what the stack holds ---------------------------------------------------

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File {
        /// Its contents.
        data: Vec<u8>,
        /// The sha256 of `data`, lowercase hex.
        sha256: String,
    },
    /// A symbolic link.
    Symlink(String),
    /// A folder.
    Dir,
    /// A character device node.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// Where an entry comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A Debian package of the input set.
    Package(String),
    /// One of the project's binaries (`osam-init`, `fixupctl`, `osam-stage2`).
    Input(String),
    /// Written by this builder (`/etc/passwd`, folders, …).
    Generated,
}

impl Origin {
    /// The package name, the binary's name, or `osam-image`.
    pub fn label(&self) -> &str {
        match self {
            Origin::Package(p) | Origin::Input(p) => p,
            Origin::Generated => "osam-image",
        }
    }
}

/// One initramfs entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path, relative (`usr/bin/vmtoolsd`).
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// What it is.
    pub kind: EntryKind,
    /// Where it comes from.
    pub origin: Origin,
}

/// A package the stack took files from (for the manifest and the GPL
/// source offer).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageInfo {
    /// Binary package name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its Debian architecture.
    pub arch: String,
    /// The source package.
    pub source: String,
    /// The source version.
    pub source_version: String,
}

/// The stack's initramfs contents, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackContents {
    /// The stack.
    pub arch: StackArch,
    /// Every entry, sorted by path.
    pub entries: Vec<Entry>,
    /// The packages that entries come from, sorted by name.
    pub packages: Vec<PackageInfo>,
}

impl StackContents {
    /// The entry at `path` (relative).
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The total size of the regular files.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// The entries in a cpio archive with the given `SOURCE_DATE_EPOCH`.
    pub fn to_cpio(&self, epoch: u64) -> Result<Cpio> {
        let mut cpio = Cpio::with_epoch(epoch);
        self.add_to_cpio(&mut cpio)?;
        Ok(cpio)
    }

    /// Adds the entries to an archive being built (which may hold kernel
    /// modules already).
    pub fn add_to_cpio(&self, cpio: &mut Cpio) -> Result<()> {
        for e in &self.entries {
            match &e.kind {
                EntryKind::File { data, .. } => cpio.add_file(&e.path, e.mode, data.clone())?,
                EntryKind::Symlink(target) => cpio.add_symlink(&e.path, target)?,
                EntryKind::Dir => cpio.add_dir(&e.path, e.mode)?,
                EntryKind::CharDev { major, minor } => {
                    cpio.add_char_dev(&e.path, e.mode, *major, *minor)?
                }
            }
        }
        Ok(())
    }

    /// Writes the entries under `dir` (device nodes are left out), for
    /// running the tools in a chroot.
    pub fn write_to_dir(&self, dir: &Path) -> Result<()> {
        for e in &self.entries {
            let dest = dir.join(&e.path);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            }
            match &e.kind {
                EntryKind::File { data, .. } => {
                    fs::write(&dest, data).map_err(io_err("writing", &dest))?;
                    fs::set_permissions(&dest, fs::Permissions::from_mode(e.mode))
                        .map_err(io_err("setting the mode of", &dest))?;
                }
                EntryKind::Symlink(target) => {
                    std::os::unix::fs::symlink(target, &dest)
                        .map_err(io_err("creating the link", &dest))?;
                }
                EntryKind::Dir => {
                    fs::create_dir_all(&dest).map_err(io_err("creating", &dest))?;
                    fs::set_permissions(&dest, fs::Permissions::from_mode(e.mode))
                        .map_err(io_err("setting the mode of", &dest))?;
                }
                EntryKind::CharDev { .. } => {}
            }
        }
        Ok(())
    }
}

/// The busybox applets linked in `/bin`: what a field engineer reaches
/// for in a rescue shell. Tools that the stack carries as real programs
/// (`blkid`-like ones from e2fsprogs, `mdadm`, the LVM commands, `mkfs.*`,
/// `fsck.*`) are not among them. Every name is an applet of Debian's
/// busybox-static (the tests check it against `busybox --list`).
pub const BUSYBOX_APPLETS: &[&str] = &[
    "awk",
    "base64",
    "basename",
    "blockdev",
    "cat",
    "chmod",
    "chown",
    "chroot",
    "clear",
    "cmp",
    "cp",
    "cpio",
    "cut",
    "date",
    "dd",
    "df",
    "diff",
    "dirname",
    "dmesg",
    "du",
    "echo",
    "env",
    "false",
    "fdisk",
    "find",
    "findfs",
    "free",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "hexdump",
    "hostname",
    "id",
    "ifconfig",
    "insmod",
    "ip",
    "kill",
    "less",
    "ln",
    "losetup",
    "ls",
    "lsmod",
    "lsscsi",
    "md5sum",
    "mkdir",
    "mknod",
    "mktemp",
    "modprobe",
    "more",
    "mount",
    "mv",
    "nc",
    "nslookup",
    "od",
    "ping",
    "poweroff",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "reboot",
    "rm",
    "rmdir",
    "rmmod",
    "route",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "strings",
    "stty",
    "switch_root",
    "sync",
    "tail",
    "tar",
    "tee",
    "test",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "udhcpc",
    "umount",
    "uname",
    "uniq",
    "unxz",
    "uptime",
    "vi",
    "watch",
    "wc",
    "wget",
    "which",
    "xargs",
    "xxd",
    "xz",
    "xzcat",
    "yes",
    "zcat",
];

/// The programs taken from each tool package (paths in the package). The
/// symbolic links of the same package that lead to them in a `bin` folder
/// come along (`vgchange` → `lvm`, `mkfs.ext4` → `mke2fs`).
pub const TOOLS: &[(&str, &[&str])] = &[
    ("busybox-static", &["bin/busybox"]),
    (
        "lvm2",
        &["sbin/lvm", "etc/lvm/lvm.conf", "etc/lvm/lvmlocal.conf"],
    ),
    ("dmsetup", &["sbin/dmsetup"]),
    ("mdadm", &["sbin/mdadm"]),
    (
        "e2fsprogs",
        &[
            "sbin/e2fsck",
            "sbin/mke2fs",
            "sbin/tune2fs",
            "sbin/resize2fs",
            "sbin/dumpe2fs",
            "sbin/debugfs",
            "etc/mke2fs.conf",
        ],
    ),
    (
        "xfsprogs",
        &[
            "sbin/xfs_repair",
            "sbin/mkfs.xfs",
            "sbin/fsck.xfs",
            "usr/sbin/xfs_admin",
            "usr/sbin/xfs_db",
            "usr/sbin/xfs_growfs",
            "usr/sbin/xfs_info",
            "usr/sbin/xfs_io",
        ],
    ),
    (
        "btrfs-progs",
        &["bin/btrfs", "sbin/mkfs.btrfs", "bin/btrfstune"],
    ),
    (
        "open-vm-tools",
        &[
            "usr/bin/vmtoolsd",
            "usr/bin/vmware-rpctool",
            "usr/bin/vmware-checkvm",
            "usr/bin/vmware-toolbox-cmd",
            "etc/vmware-tools/tools.conf",
        ],
    ),
];

const BIN_DIRS: &[&str] = &["bin", "sbin", "usr/bin", "usr/sbin"];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";
const GROUP: &str = "root:x:0:\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n";

struct Builder<'a> {
    inputs: &'a InputSet,
    entries: BTreeMap<String, Entry>,
    elf_queue: VecDeque<String>,
}

impl Builder<'_> {
    fn insert(&mut self, entry: Entry) -> Result<()> {
        if let Some(old) = self.entries.get(&entry.path) {
            if old.kind == entry.kind {
                return Ok(());
            }
            return Err(StackError::Conflict {
                path: entry.path,
                first: old.origin.label().to_owned(),
                second: entry.origin.label().to_owned(),
            });
        }
        if matches!(entry.kind, EntryKind::File { ref data, .. } if elf::is_elf(data)) {
            self.elf_queue.push_back(entry.path.clone());
        }
        self.entries.insert(entry.path.clone(), entry);
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, data: Vec<u8>, origin: Origin) -> Result<()> {
        let sha256 = hex(&Sha256::digest(&data));
        self.insert(Entry {
            path: path.to_owned(),
            mode,
            kind: EntryKind::File { data, sha256 },
            origin,
        })
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.insert(Entry {
            path: path.to_owned(),
            mode,
            kind: EntryKind::Dir,
            origin: Origin::Generated,
        })
    }

    fn symlink(&mut self, path: &str, target: &str, origin: Origin) -> Result<()> {
        self.insert(Entry {
            path: path.to_owned(),
            mode: 0o777,
            kind: EntryKind::Symlink(target.to_owned()),
            origin,
        })
    }

    /// Adds `path` from the packages: the file it leads to and every
    /// symbolic link on the way. `Ok(None)` where no package has it.
    fn add_packaged(&mut self, path: &str) -> Result<Option<String>> {
        let Some((file, links)) = self.inputs.resolve(path)? else {
            return Ok(None);
        };
        for link in links {
            let node = &self.inputs.index[&link];
            if let NodeKind::Symlink(target) = &node.kind {
                let (target, origin) = (target.clone(), Origin::Package(node.package.clone()));
                self.symlink(&link, &target, origin)?;
            }
        }
        if !self.entries.contains_key(&file) {
            let src = self
                .inputs
                .source_path(&file)
                .expect("resolved paths are indexed");
            let data = fs::read(&src).map_err(io_err("reading", &src))?;
            let meta = fs::metadata(&src).map_err(io_err("reading", &src))?;
            let origin = Origin::Package(self.inputs.index[&file].package.clone());
            self.file(&file, meta.mode() & 0o777, data, origin)?;
        }
        Ok(Some(file))
    }

    fn require(&mut self, path: &str, package: &str) -> Result<String> {
        self.add_packaged(path)?
            .ok_or_else(|| StackError::MissingFile {
                path: path.to_owned(),
                package: package.to_owned(),
            })
    }

    /// Follows `PT_INTERP` and `DT_NEEDED` of every ELF file added.
    fn close_libraries(&mut self) -> Result<()> {
        let arch = self.inputs.arch;
        while let Some(path) = self.elf_queue.pop_front() {
            let info = match &self.entries[&path].kind {
                EntryKind::File { data, .. } => elf::read(data, arch),
                _ => continue,
            }
            .map_err(|reason| StackError::Elf {
                path: path.clone(),
                reason,
            })?;
            let Some(info) = info else { continue };
            if let Some(interp) = &info.interpreter {
                self.add_packaged(interp)?
                    .ok_or_else(|| StackError::Unresolved {
                        file: path.clone(),
                        needed: interp.clone(),
                        arch,
                    })?;
            }
            let origin_dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
            let mut dirs: Vec<String> = info
                .search
                .iter()
                .map(|d| d.replace("$ORIGIN", &format!("/{origin_dir}")))
                .collect();
            dirs.extend(arch.library_dirs());
            for needed in &info.needed {
                let found = if needed.contains('/') {
                    self.library(needed)?
                } else {
                    let mut found = None;
                    for dir in &dirs {
                        if let Some(f) = self.library(&format!("{dir}/{needed}"))? {
                            found = Some(f);
                            break;
                        }
                    }
                    found
                };
                if found.is_none() {
                    return Err(StackError::Unresolved {
                        file: path.clone(),
                        needed: needed.clone(),
                        arch,
                    });
                }
            }
        }
        Ok(())
    }

    /// Adds the library at `path` if it is there and built for the stack.
    fn library(&mut self, path: &str) -> Result<Option<String>> {
        let Some((file, _)) = self.inputs.resolve(path)? else {
            return Ok(None);
        };
        if !self.entries.contains_key(&file) {
            let src = self
                .inputs
                .source_path(&file)
                .expect("resolved paths are indexed");
            let data = fs::read(&src).map_err(io_err("reading", &src))?;
            if !matches!(elf::read(&data, self.inputs.arch), Ok(Some(_))) {
                return Ok(None);
            }
        }
        self.add_packaged(path)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(io_err("reading", path))
}

/// Selects the stack's initramfs contents for `arch` from `inputs`:
/// `/init` (`init`, the built osam-init), `/usr/bin/fixupctl`,
/// `/opt/osam/bin/osam-stage2` when given, busybox with
/// [`BUSYBOX_APPLETS`] linked in `/bin`, the [`TOOLS`], vmtoolsd's
/// plugins, the NSS `files` module, `libgcc_s` (glibc loads it for thread
/// cancellation), the library closure of every ELF file
/// among them, a few generated `/etc` files and the usual mount points.
pub fn stack_contents(
    arch: StackArch,
    inputs: &InputSet,
    init: &Path,
    fixupctl: &Path,
    stage2: Option<&Path>,
) -> Result<StackContents> {
    assert_eq!(arch, inputs.arch(), "the input set is for another stack");
    let mut b = Builder {
        inputs,
        entries: BTreeMap::new(),
        elf_queue: VecDeque::new(),
    };

    // The project's binaries.
    let mut ours = vec![
        ("init", init, "osam-init"),
        ("usr/bin/fixupctl", fixupctl, "fixupctl"),
    ];
    if let Some(stage2) = stage2 {
        ours.push(("opt/osam/bin/osam-stage2", stage2, "osam-stage2"));
    }
    for (path, src, name) in ours {
        let data = read_input(src)?;
        if let Err(reason) = elf::read(&data, arch) {
            return Err(StackError::Elf {
                path: src.display().to_string(),
                reason,
            });
        }
        b.file(path, 0o755, data, Origin::Input(name.to_owned()))?;
    }

    // The tools and the links to them.
    for (package, paths) in TOOLS {
        if !inputs.packages.contains_key(*package) {
            return Err(StackError::MissingPackage((*package).to_owned()));
        }
        for path in *paths {
            b.require(path, package)?;
        }
    }
    let links: Vec<(String, String, String)> = inputs
        .index
        .iter()
        .filter(|(path, node)| {
            TOOLS.iter().any(|(p, _)| *p == node.package)
                && BIN_DIRS
                    .iter()
                    .any(|d| path.rsplit_once('/').is_some_and(|(dir, _)| dir == *d))
        })
        .filter_map(|(path, node)| match &node.kind {
            NodeKind::Symlink(t) => Some((path.clone(), t.clone(), node.package.clone())),
            NodeKind::File => None,
        })
        .collect();
    for (path, target, package) in links {
        if let Some((file, _)) = inputs.resolve(&path)?
            && b.entries.contains_key(&file)
        {
            b.symlink(&path, &target, Origin::Package(package))?;
        }
    }
    for applet in BUSYBOX_APPLETS {
        let path = format!("bin/{applet}");
        if !b.entries.contains_key(&path) {
            b.symlink(&path, "busybox", Origin::Package("busybox-static".into()))?;
        }
    }

    // What vmtoolsd loads at run time: its plugins.
    let plugins = format!("usr/lib/{}/open-vm-tools/plugins/", arch.triplet());
    let plugin_paths: Vec<String> = inputs
        .index
        .range(plugins.clone()..)
        .take_while(|(p, _)| p.starts_with(&plugins))
        .filter(|(p, _)| p.ends_with(".so"))
        .map(|(p, _)| p.clone())
        .collect();
    if plugin_paths.is_empty() {
        return Err(StackError::MissingFile {
            path: plugins,
            package: "open-vm-tools".into(),
        });
    }
    for path in plugin_paths {
        b.require(&path, "open-vm-tools")?;
    }
    // What glibc loads at run time: the NSS files module (getpwnam & co.).
    b.require(
        &format!("lib/{}/libnss_files.so.2", arch.triplet()),
        "libc6",
    )?;
    // glibc loads libgcc_s for thread cancellation and unwinding.
    b.require(
        &format!("lib/{}/libgcc_s.so.1", arch.triplet()),
        "libgcc-s1",
    )?;

    b.close_libraries()?;

    // libtirpc reads its network configuration.
    if b.entries.values().any(|e| {
        e.origin == Origin::Package("libtirpc3".into()) && matches!(e.kind, EntryKind::File { .. })
    }) {
        b.require("etc/netconfig", "libtirpc-common")?;
    }

    // Generated configuration and the mount points.
    b.file("etc/passwd", 0o644, PASSWD.into(), Origin::Generated)?;
    b.file("etc/group", 0o644, GROUP.into(), Origin::Generated)?;
    b.file(
        "etc/nsswitch.conf",
        0o644,
        NSSWITCH.into(),
        Origin::Generated,
    )?;
    b.file("etc/mdadm/mdadm.conf", 0o644, Vec::new(), Origin::Generated)?;
    b.symlink("etc/mtab", "/proc/self/mounts", Origin::Generated)?;
    for dir in ["dev", "proc", "sys", "run", "mnt", "sysroot", "var/tmp"] {
        b.dir(dir, 0o755)?;
    }
    b.dir("root", 0o700)?;
    b.dir("tmp", 0o1777)?;
    b.insert(Entry {
        path: "dev/console".into(),
        mode: 0o600,
        kind: EntryKind::CharDev { major: 5, minor: 1 },
        origin: Origin::Generated,
    })?;
    b.insert(Entry {
        path: "dev/null".into(),
        mode: 0o666,
        kind: EntryKind::CharDev { major: 1, minor: 3 },
        origin: Origin::Generated,
    })?;

    // Parent folders the entries imply, so that a tree or cpio written from
    // the list alone is complete.
    let parents: BTreeSet<String> = b
        .entries
        .keys()
        .flat_map(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            (1..parts.len())
                .map(|n| parts[..n].join("/"))
                .collect::<Vec<_>>()
        })
        .collect();
    for dir in parents {
        if !b.entries.contains_key(&dir) {
            b.dir(&dir, 0o755)?;
        }
    }

    let used: BTreeSet<&str> = b
        .entries
        .values()
        .filter_map(|e| match &e.origin {
            Origin::Package(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    let mut packages = Vec::new();
    for name in used {
        let p = inputs
            .packages
            .get(name)
            .ok_or_else(|| StackError::MissingPackage(name.to_owned()))?;
        packages.push(PackageInfo {
            name: p.name.clone(),
            version: p.version.clone(),
            arch: p.arch.clone(),
            source: p.source.clone(),
            source_version: p.source_version.clone(),
        });
    }
    Ok(StackContents {
        arch,
        entries: b.entries.into_values().collect(),
        packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINS: &str = "\
amd64 linux-image-6.1.0-50-amd64 6.1.176-1
amd64 lvm2 2.03.16-2 # root
i386 lvm2 2.03.16-2 # root
amd64 grub-pc-bin 2.06-13+deb12u2
# >>> closure (generated)
# amd64
amd64 libc6 2.36-9+deb12u14
all libtirpc-common 1.3.3+ds-1
# i386
i386 libc6 2.36-9+deb12u14
# <<< closure
amd64 rootless 1 # rooted, not root
";

    #[test]
    fn picks_roots_and_closure() {
        let names = |arch| {
            stack_pins(PINS, arch)
                .unwrap()
                .into_iter()
                .map(|p| format!("{}{}", p.pin.package, if p.root { "*" } else { "" }))
                .collect::<Vec<_>>()
        };
        assert_eq!(names("amd64"), ["lvm2*", "libc6", "libtirpc-common"]);
        assert_eq!(names("i386"), ["lvm2*", "libtirpc-common", "libc6"]);
        assert!(stack_pins("amd64 x # root\n", "amd64").is_err());
    }

    fn set(files: &[(&str, &str)], links: &[(&str, &str)]) -> (tempfile::TempDir, InputSet) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pkg");
        for (p, data) in files {
            let dest = root.join(p);
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::write(dest, data).unwrap();
        }
        for (p, target) in links {
            let dest = root.join(p);
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, dest).unwrap();
        }
        let pkg = InputPackage {
            name: "pkg".into(),
            version: "1".into(),
            arch: "amd64".into(),
            source: "pkg".into(),
            source_version: "1".into(),
            root,
        };
        let set = InputSet::from_packages(StackArch::X86_64, vec![pkg]).unwrap();
        (tmp, set)
    }

    #[test]
    fn resolves_through_links() {
        let (_tmp, s) = set(
            &[("lib/x86_64-linux-gnu/libx.so.1.2", "x")],
            &[
                ("lib/x86_64-linux-gnu/libx.so.1", "libx.so.1.2"),
                ("lib64/libx.so", "/lib/x86_64-linux-gnu/libx.so.1"),
                ("usr/lib/x86_64-linux-gnu/up", "../../../lib"),
                ("loop/a", "b"),
                ("loop/b", "a"),
            ],
        );
        let (file, links) = s.resolve("lib64/libx.so").unwrap().unwrap();
        assert_eq!(file, "lib/x86_64-linux-gnu/libx.so.1.2");
        assert_eq!(links, ["lib64/libx.so", "lib/x86_64-linux-gnu/libx.so.1"]);
        let (file, _) = s
            .resolve("usr/lib/x86_64-linux-gnu/up/x86_64-linux-gnu/libx.so.1")
            .unwrap()
            .unwrap();
        assert_eq!(file, "lib/x86_64-linux-gnu/libx.so.1.2");
        assert!(s.resolve("lib/nothing").unwrap().is_none());
        assert!(s.resolve("lib").unwrap().is_none());
        assert!(matches!(
            s.resolve("loop/a"),
            Err(StackError::SymlinkLoop(_))
        ));
    }
}
