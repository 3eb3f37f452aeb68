//! Reading a guest's file tree without ever leaving it.
//!
//! The guest is mounted at some directory (`/sysroot` in the stack, a
//! temporary directory in tests) and its files are hostile input: an
//! absolute symlink such as `/etc/os-release -> /etc/passwd` means the
//! guest's `/etc/passwd`, never the stack's, and no chain of `..` or of
//! symlinks may lead out of the tree. [`GuestRoot`] resolves every path
//! inside the root: with `openat2(2)` and `RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS` where the kernel has it (Linux 5.6+), else with
//! [`resolve_in_root_userspace`], a component-by-component resolver that
//! applies the same rules.
//!
//! Reads are bounded (a file over the caller's limit is an error, never a
//! silent truncation) and never block: files are opened with `O_NONBLOCK`
//! only after a look through an `O_PATH` descriptor has shown that they are
//! regular files, so a FIFO, socket or device node where a configuration
//! file belongs is refused without being opened.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

/// The default limit for a configuration file read whole (16 MiB).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// The most symlinks one resolution follows (the kernel's own limit).
pub const MAX_SYMLINKS: usize = 40;

/// The most entries [`GuestRoot::read_dir`] returns before it gives up.
pub const MAX_DIR_ENTRIES: usize = 200_000;

/// The longest symlink target the user-space resolver accepts (PATH_MAX).
const MAX_LINK_TARGET: usize = 4096;

/// The deepest directory nesting the user-space resolver walks (it holds
/// one descriptor per level): far beyond any real path, well below the
/// descriptor limit.
const MAX_DEPTH: usize = 512;

/// How often an `openat2` that the kernel answers with `EAGAIN` (a rename
/// or mount raced with the resolution) is retried.
const OPENAT2_RETRIES: usize = 16;

/// Which resolver a [`GuestRoot`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`.
    Kernel,
    /// [`resolve_in_root_userspace`], for kernels without `openat2`.
    UserSpace,
}

/// The type of a directory entry or of a resolved object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl FileKind {
    /// The kind of a `stat` result.
    pub fn from_stat(st: &FileStat) -> FileKind {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => FileKind::File,
            SFlag::S_IFDIR => FileKind::Dir,
            SFlag::S_IFLNK => FileKind::Symlink,
            SFlag::S_IFIFO => FileKind::Fifo,
            SFlag::S_IFSOCK => FileKind::Socket,
            SFlag::S_IFCHR => FileKind::CharDevice,
            SFlag::S_IFBLK => FileKind::BlockDevice,
            _ => FileKind::Unknown,
        }
    }

    fn from_dirent(t: Type) -> FileKind {
        match t {
            Type::File => FileKind::File,
            Type::Directory => FileKind::Dir,
            Type::Symlink => FileKind::Symlink,
            Type::Fifo => FileKind::Fifo,
            Type::Socket => FileKind::Socket,
            Type::CharacterDevice => FileKind::CharDevice,
            Type::BlockDevice => FileKind::BlockDevice,
        }
    }

    /// A short name for messages: "regular file", "directory", "fifo", ...
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::File => "regular file",
            FileKind::Dir => "directory",
            FileKind::Symlink => "symbolic link",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Unknown => "file of unknown type",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// One entry of [`GuestRoot::read_dir`]. `file_type` is the type of the
/// entry itself: a symlink is [`FileKind::Symlink`], whatever it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryInfo {
    /// The entry's name (guest file names need not be UTF-8).
    pub name: OsString,
    pub file_type: FileKind,
}

impl DirEntryInfo {
    /// The name, if it is UTF-8.
    pub fn name_str(&self) -> Option<&str> {
        self.name.to_str()
    }
}

/// What [`resolve_in_root_userspace`] found.
#[derive(Debug)]
pub struct Resolved {
    /// The object, opened with the flags the caller asked for.
    pub fd: OwnedFd,
    /// Its canonical path inside the guest: absolute, no `.`, `..` or
    /// symlink among its directories (the last component is a symlink
    /// only when the caller asked not to follow it).
    pub guest_path: PathBuf,
}

/// A guest tree mounted at a directory; every path given to its methods is
/// a guest path (absolute or not, it starts at the guest's `/`) and is
/// resolved inside the tree.
#[derive(Debug)]
pub struct GuestRoot {
    root: PathBuf,
    dir: OwnedFd,
    resolver: Resolver,
}

impl GuestRoot {
    /// Opens the guest tree mounted at `path`, using `openat2(2)` where the
    /// kernel has it and the user-space resolver otherwise.
    pub fn open(path: &Path) -> io::Result<GuestRoot> {
        let dir = open_root_dir(path)?;
        let resolver = if kernel_resolver_works(dir.as_fd()) {
            Resolver::Kernel
        } else {
            Resolver::UserSpace
        };
        Ok(GuestRoot {
            root: canonical_root(path)?,
            dir,
            resolver,
        })
    }

    /// Opens the guest tree at `path` with the given resolver. Asking for
    /// [`Resolver::Kernel`] on a kernel without a working `openat2` is an
    /// error of kind `Unsupported`.
    pub fn open_with_resolver(path: &Path, resolver: Resolver) -> io::Result<GuestRoot> {
        let dir = open_root_dir(path)?;
        if resolver == Resolver::Kernel && !kernel_resolver_works(dir.as_fd()) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "openat2(2) with RESOLVE_IN_ROOT is not available on this kernel",
            ));
        }
        Ok(GuestRoot {
            root: canonical_root(path)?,
            dir,
            resolver,
        })
    }

    /// The host path of the tree's root (canonical).
    pub fn root_path(&self) -> &Path {
        &self.root
    }

    /// The resolver in use.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Opens a regular file of the guest for reading (`O_RDONLY |
    /// O_NONBLOCK | O_CLOEXEC`). Anything else — directory, FIFO, socket,
    /// device — is an error of kind `InvalidInput` naming the path, and is
    /// not opened for reading at all, so a FIFO never blocks.
    pub fn open_file(&self, guest_path: &str) -> io::Result<File> {
        let probe = self.open_in_root(guest_path, OFlag::O_PATH | OFlag::O_CLOEXEC)?;
        let before = fstat(&probe).map_err(|e| with_path(guest_path, e.into()))?;
        require_regular(guest_path, &before)?;
        let fd = self.open_in_root(
            guest_path,
            OFlag::O_RDONLY
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY
                | OFlag::O_LARGEFILE,
        )?;
        let after = fstat(&fd).map_err(|e| with_path(guest_path, e.into()))?;
        require_regular(guest_path, &after)?;
        if (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino) {
            return Err(io::Error::other(format!(
                "{guest_path}: the file changed while it was being opened"
            )));
        }
        Ok(File::from(fd))
    }

    /// Reads a whole regular file of at most `max_bytes` bytes; a larger
    /// file is an error of kind `FileTooLarge` (nothing is truncated).
    pub fn read(&self, guest_path: &str, max_bytes: u64) -> io::Result<Vec<u8>> {
        let file = self.open_file(guest_path)?;
        let len = file.metadata().map_err(|e| with_path(guest_path, e))?.len();
        if len > max_bytes {
            return Err(too_large(guest_path, max_bytes));
        }
        // The size may lie (a file growing meanwhile): read one byte more
        // than allowed to notice.
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| with_path(guest_path, e))?;
        if buf.len() as u64 > max_bytes {
            return Err(too_large(guest_path, max_bytes));
        }
        Ok(buf)
    }

    /// [`read`](Self::read), with invalid UTF-8 replaced by U+FFFD.
    pub fn read_to_string_lossy(&self, guest_path: &str, max_bytes: u64) -> io::Result<String> {
        let bytes = self.read(guest_path, max_bytes)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Reads at most the first `max_bytes` bytes of a regular file (for
    /// headers such as an ELF header); a longer file is not an error.
    pub fn read_head(&self, guest_path: &str, max_bytes: u64) -> io::Result<Vec<u8>> {
        let file = self.open_file(guest_path)?;
        let mut buf = Vec::new();
        file.take(max_bytes)
            .read_to_end(&mut buf)
            .map_err(|e| with_path(guest_path, e))?;
        Ok(buf)
    }

    /// Whether the path resolves (following symlinks) to anything.
    pub fn exists(&self, guest_path: &str) -> bool {
        self.open_in_root(guest_path, OFlag::O_PATH | OFlag::O_CLOEXEC)
            .is_ok()
    }

    /// The metadata of what the path resolves to, following symlinks
    /// inside the guest.
    pub fn metadata(&self, guest_path: &str) -> io::Result<std::fs::Metadata> {
        let fd = self.open_in_root(guest_path, OFlag::O_PATH | OFlag::O_CLOEXEC)?;
        File::from(fd)
            .metadata()
            .map_err(|e| with_path(guest_path, e))
    }

    /// The metadata of the path itself: a final symlink is not followed
    /// (the directories leading to it are, inside the guest).
    pub fn symlink_metadata(&self, guest_path: &str) -> io::Result<std::fs::Metadata> {
        let fd = self.open_in_root(
            guest_path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        )?;
        File::from(fd)
            .metadata()
            .map_err(|e| with_path(guest_path, e))
    }

    /// The target of a symlink, as written in the guest (an absolute
    /// target is relative to the guest's root). Not a symlink: an error of
    /// kind `InvalidInput`.
    pub fn read_link(&self, guest_path: &str) -> io::Result<PathBuf> {
        let fd = self.open_in_root(
            guest_path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        )?;
        let st = fstat(&fd).map_err(|e| with_path(guest_path, e.into()))?;
        let kind = FileKind::from_stat(&st);
        if kind != FileKind::Symlink {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{guest_path}: not a symbolic link but a {kind}"),
            ));
        }
        readlinkat(&fd, "")
            .map(PathBuf::from)
            .map_err(|e| with_path(guest_path, e.into()))
    }

    /// The entries of a directory (following symlinks to it), without `.`
    /// and `..`, sorted by name. More than [`MAX_DIR_ENTRIES`] entries is
    /// an error.
    pub fn read_dir(&self, guest_path: &str) -> io::Result<Vec<DirEntryInfo>> {
        let fd = self.open_in_root(
            guest_path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        )?;
        let stat_fd = fd.try_clone().map_err(|e| with_path(guest_path, e))?;
        let mut dir = Dir::from_fd(fd).map_err(|e| with_path(guest_path, e.into()))?;
        let mut entries = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| with_path(guest_path, e.into()))?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            if entries.len() >= MAX_DIR_ENTRIES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{guest_path}: more than {MAX_DIR_ENTRIES} directory entries"),
                ));
            }
            let file_type = match entry.file_type() {
                Some(t) => FileKind::from_dirent(t),
                None => fstatat(&stat_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map(|st| FileKind::from_stat(&st))
                    .unwrap_or(FileKind::Unknown),
            };
            entries.push(DirEntryInfo {
                name: OsString::from_vec(bytes.to_vec()),
                file_type,
            });
        }
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(entries)
    }

    /// The host path of what `guest_path` resolves to (following symlinks
    /// inside the guest), for tools that need a path: the root's path
    /// joined with the canonical guest path, so no component below the
    /// root is a symlink. The object must exist. The answer holds as long
    /// as nobody renames or relinks the guest's directories meanwhile.
    pub fn resolve(&self, guest_path: &str) -> io::Result<PathBuf> {
        let found = self.canonicalize(guest_path)?;
        Ok(self.host_path(&found))
    }

    /// The canonical guest path (absolute, symlinks resolved inside the
    /// guest) of what `guest_path` resolves to. The object must exist.
    pub fn canonicalize(&self, guest_path: &str) -> io::Result<PathBuf> {
        resolve_in_root_userspace(
            self.dir.as_fd(),
            OsStr::new(guest_path),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
        )
        .map(|r| r.guest_path)
        .map_err(|e| with_path(guest_path, e))
    }

    /// The host path of a canonical guest path (no resolution: use
    /// [`resolve`](Self::resolve) for anything that came from the guest).
    fn host_path(&self, canonical: &Path) -> PathBuf {
        match canonical.strip_prefix("/") {
            Ok(rel) if !rel.as_os_str().is_empty() => self.root.join(rel),
            _ => self.root.clone(),
        }
    }

    /// Opens `guest_path` inside the root with `flags`; `O_NOFOLLOW` in
    /// `flags` means "do not follow a final symlink" (with `O_PATH`, the
    /// symlink itself is opened).
    /// Opens a directory of the guest (resolved inside the root) for use
    /// with the `*at` system calls.
    pub fn open_dir(&self, guest_path: &str) -> io::Result<OwnedFd> {
        self.open_in_root(
            guest_path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        )
    }

    /// Creates a directory and its missing parents inside the guest (like
    /// `mkdir -p`), each new one with `mode`; returns the directory opened.
    /// A component that exists and is not a directory is an error.
    pub fn create_dir_all(&self, guest_path: &str, mode: u32) -> io::Result<OwnedFd> {
        let mut cur = String::from("/");
        let mut dir = self.open_dir("/")?;
        for comp in guest_path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp == ".." {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{guest_path}: `..` is not allowed here"),
                ));
            }
            if !cur.ends_with('/') {
                cur.push('/');
            }
            cur.push_str(comp);
            match nix::sys::stat::mkdirat(&dir, comp, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(with_path(&cur, e.into())),
            }
            dir = self.open_dir(&cur)?;
        }
        Ok(dir)
    }

    fn open_in_root(&self, guest_path: &str, flags: OFlag) -> io::Result<OwnedFd> {
        if guest_path.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: a path with a NUL byte", guest_path.escape_debug()),
            ));
        }
        let result = match self.resolver {
            Resolver::Kernel => match open_with_openat2(self.dir.as_fd(), guest_path, flags) {
                Err(Errno::ENOSYS) => {
                    resolve_in_root_userspace(self.dir.as_fd(), OsStr::new(guest_path), flags)
                        .map(|r| r.fd)
                }
                other => other.map_err(io::Error::from),
            },
            Resolver::UserSpace => {
                resolve_in_root_userspace(self.dir.as_fd(), OsStr::new(guest_path), flags)
                    .map(|r| r.fd)
            }
        };
        result.map_err(|e| with_path(guest_path, e))
    }
}

fn open_root_dir(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("{}: {e}", path.display()),
        )
    })
}

fn canonical_root(path: &Path) -> io::Result<PathBuf> {
    std::fs::canonicalize(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Whether `openat2` with our resolve flags works here (it may be missing,
/// or refused by a seccomp filter).
fn kernel_resolver_works(root: BorrowedFd<'_>) -> bool {
    open_with_openat2(root, "/", OFlag::O_PATH | OFlag::O_CLOEXEC).is_ok()
}

fn open_with_openat2(root: BorrowedFd<'_>, guest_path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    // An empty path means the root, as for the user-space resolver.
    let path = if guest_path.is_empty() {
        "/"
    } else {
        guest_path
    };
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut last = Errno::EAGAIN;
    for _ in 0..OPENAT2_RETRIES {
        match openat2(root, path, how) {
            Err(Errno::EAGAIN) => last = Errno::EAGAIN,
            other => return other,
        }
    }
    Err(last)
}

/// Resolves `guest_path` inside the directory `root` in user space, the
/// way `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` does, and opens
/// the result with `flags`:
///
/// - the path, and every absolute symlink met on the way, starts at `root`;
/// - `..` at `root` stays at `root`;
/// - each component is opened with `O_PATH | O_NOFOLLOW` and examined
///   through that descriptor (a symlink is read with `readlinkat` on the
///   descriptor itself), so nothing is resolved by the kernel across a
///   symlink; "magic" links (`/proc/*/fd/*`, ...) are read as plain text;
/// - at most [`MAX_SYMLINKS`] symlinks are followed (then `ELOOP`), and
///   directories nest at most 512 deep (then `ENAMETOOLONG`);
/// - a final symlink is followed unless `flags` has `O_NOFOLLOW`; a
///   trailing `/` always follows it and requires a directory.
///
/// The final object is reopened with `flags | O_NOFOLLOW` relative to its
/// parent and must be the very object examined (same device and inode).
pub fn resolve_in_root_userspace(
    root: BorrowedFd<'_>,
    guest_path: &OsStr,
    flags: OFlag,
) -> io::Result<Resolved> {
    let bytes = guest_path.as_bytes();
    if bytes.contains(&0) {
        return Err(Errno::EINVAL.into());
    }
    let trailing_slash = bytes.len() > 1 && bytes.ends_with(b"/");
    let follow_last = trailing_slash || !flags.contains(OFlag::O_NOFOLLOW);
    let mut open_flags = flags | OFlag::O_NOFOLLOW;
    if trailing_slash {
        open_flags |= OFlag::O_DIRECTORY;
    }

    // The directories below the root that lead to where we are.
    let mut stack: Vec<(OsString, OwnedFd)> = Vec::new();
    let mut pending: VecDeque<OsString> = components(bytes).collect();
    let mut links = 0usize;

    while let Some(name) = pending.pop_front() {
        match name.as_bytes() {
            b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let is_last = pending.is_empty();
        let fd = {
            let cur = current(root, &stack);
            openat(
                cur,
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?
        };
        let st = fstat(&fd)?;
        match FileKind::from_stat(&st) {
            FileKind::Symlink if !is_last || follow_last => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP.into());
                }
                let target = readlinkat(&fd, "")?;
                let target = target.as_bytes();
                if target.is_empty() {
                    return Err(Errno::ENOENT.into());
                }
                if target.len() > MAX_LINK_TARGET {
                    return Err(Errno::ENAMETOOLONG.into());
                }
                if target.starts_with(b"/") {
                    stack.clear();
                }
                for c in components(target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(c);
                }
                if is_last && target.ends_with(b"/") {
                    open_flags |= OFlag::O_DIRECTORY;
                }
            }
            FileKind::Dir if !is_last => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Errno::ENAMETOOLONG.into());
                }
                stack.push((name, fd));
            }
            _ if !is_last => return Err(Errno::ENOTDIR.into()),
            _ => {
                let final_fd = openat(
                    current(root, &stack),
                    name.as_os_str(),
                    open_flags,
                    Mode::empty(),
                )?;
                same_object(&st, &final_fd)?;
                let mut guest_path = canonical(&stack);
                guest_path.push(&name);
                return Ok(Resolved {
                    fd: final_fd,
                    guest_path,
                });
            }
        }
    }

    // The path ended on a directory reached by `.`, `..` or a symlink
    // (or it was the root itself).
    let dir_flags = open_flags.difference(OFlag::O_NOFOLLOW);
    let fd = openat(current(root, &stack), ".", dir_flags, Mode::empty())?;
    Ok(Resolved {
        fd,
        guest_path: canonical(&stack),
    })
}

fn components(bytes: &[u8]) -> impl Iterator<Item = OsString> + '_ {
    bytes
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| OsString::from_vec(c.to_vec()))
}

fn current<'a>(root: BorrowedFd<'a>, stack: &'a [(OsString, OwnedFd)]) -> BorrowedFd<'a> {
    stack.last().map_or(root, |(_, fd)| fd.as_fd())
}

fn canonical(stack: &[(OsString, OwnedFd)]) -> PathBuf {
    let mut p = PathBuf::from("/");
    for (name, _) in stack {
        p.push(name);
    }
    p
}

fn same_object(expected: &FileStat, fd: &OwnedFd) -> io::Result<()> {
    let st = fstat(fd)?;
    if (st.st_dev, st.st_ino) == (expected.st_dev, expected.st_ino) {
        Ok(())
    } else {
        // Renamed under us: say "try again", as the kernel does.
        Err(Errno::EAGAIN.into())
    }
}

fn require_regular(guest_path: &str, st: &FileStat) -> io::Result<()> {
    let kind = FileKind::from_stat(st);
    if kind == FileKind::File {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{guest_path}: not a regular file but a {kind}"),
        ))
    }
}

fn too_large(guest_path: &str, max_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("{guest_path}: larger than the {max_bytes} bytes read from such a file"),
    )
}

/// Adds the guest path to an error's message, keeping its kind.
fn with_path(guest_path: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{guest_path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A root directory inside a temporary directory, with a sibling
    /// `outside/` that must never be reachable.
    struct Tree {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    impl Tree {
        fn new() -> Tree {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("root");
            let outside = tmp.path().join("outside");
            fs::create_dir_all(root.join("etc")).unwrap();
            fs::create_dir_all(&outside).unwrap();
            fs::write(outside.join("secret"), "host secret").unwrap();
            fs::write(root.join("etc/passwd"), "guest passwd").unwrap();
            Tree {
                _tmp: tmp,
                root,
                outside,
            }
        }

        fn file(&self, p: &str, content: &str) {
            let path = self.root.join(p.trim_start_matches('/'));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }

        fn link(&self, p: &str, target: &str) {
            let path = self.root.join(p.trim_start_matches('/'));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            symlink(target, path).unwrap();
        }
    }

    /// Runs `check` on the tree with each resolver this kernel offers.
    fn with_each_resolver(tree: &Tree, check: impl Fn(&GuestRoot)) {
        let user = GuestRoot::open_with_resolver(&tree.root, Resolver::UserSpace).unwrap();
        check(&user);
        match GuestRoot::open_with_resolver(&tree.root, Resolver::Kernel) {
            Ok(kernel) => check(&kernel),
            Err(e) => eprintln!("skipping the openat2 resolver: {e}"),
        }
    }

    fn read_str(root: &GuestRoot, p: &str) -> io::Result<String> {
        root.read_to_string_lossy(p, MAX_CONFIG_BYTES)
    }

    #[test]
    fn open_picks_a_resolver_and_canonical_root() {
        let tree = Tree::new();
        let root = GuestRoot::open(&tree.root).unwrap();
        assert_eq!(root.root_path(), fs::canonicalize(&tree.root).unwrap());
        assert_eq!(read_str(&root, "/etc/passwd").unwrap(), "guest passwd");
        assert!(GuestRoot::open(&tree.root.join("missing")).is_err());
    }

    #[test]
    fn absolute_symlink_points_into_the_root() {
        let tree = Tree::new();
        tree.file("/etc/real.conf", "guest");
        tree.link("/etc/alt.conf", "/etc/real.conf");
        tree.link("/usr/lib/os-release", "../../etc/real.conf");
        tree.link("/etc/os-release", "/usr/lib/os-release");
        with_each_resolver(&tree, |root| {
            assert_eq!(read_str(root, "/etc/alt.conf").unwrap(), "guest");
            assert_eq!(read_str(root, "etc/alt.conf").unwrap(), "guest");
            assert_eq!(read_str(root, "/etc/os-release").unwrap(), "guest");
            assert_eq!(
                root.read_link("/etc/alt.conf").unwrap(),
                PathBuf::from("/etc/real.conf")
            );
        });
    }

    #[test]
    fn symlink_to_host_passwd_reads_the_guests() {
        let tree = Tree::new();
        tree.link("/etc/os-release", "/etc/passwd");
        with_each_resolver(&tree, |root| {
            assert_eq!(read_str(root, "/etc/os-release").unwrap(), "guest passwd");
            assert_eq!(
                root.resolve("/etc/os-release").unwrap(),
                root.root_path().join("etc/passwd")
            );
            assert_eq!(
                root.canonicalize("/etc/os-release").unwrap(),
                PathBuf::from("/etc/passwd")
            );
        });
    }

    #[test]
    fn dotdot_cannot_escape() {
        let tree = Tree::new();
        tree.link("/etc/esc1", "../../outside/secret");
        tree.link("/etc/esc2", "/../../../../outside/secret");
        tree.link("/etc/updir", "../../../..");
        with_each_resolver(&tree, |root| {
            for p in [
                "../outside/secret",
                "/../../../outside/secret",
                "/etc/../../outside/secret",
                "/etc/esc1",
                "/etc/esc2",
                "/etc/updir/outside/secret",
            ] {
                let err = read_str(root, p).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::NotFound, "{p}: {err}");
                assert!(!root.exists(p), "{p}");
            }
            assert_eq!(
                read_str(root, "/../../../etc/passwd").unwrap(),
                "guest passwd"
            );
            assert_eq!(
                read_str(root, "/etc/updir/etc/passwd").unwrap(),
                "guest passwd"
            );
            assert_eq!(root.resolve("/etc/updir").unwrap(), root.root_path());
            assert_eq!(root.resolve("/../..").unwrap(), root.root_path());
        });
        assert!(tree.outside.join("secret").exists());
    }

    #[test]
    fn symlink_loops_fail() {
        let tree = Tree::new();
        tree.link("/a", "b");
        tree.link("/b", "/a");
        tree.link("/self", "self");
        tree.link("/dirloop", "/dirloop/x");
        with_each_resolver(&tree, |root| {
            for p in ["/a", "/b", "/self", "/dirloop", "/a/x"] {
                let err = read_str(root, p).unwrap_err();
                assert!(err.to_string().contains(p), "{err}");
                assert!(
                    err.to_string().to_lowercase().contains("symbolic link"),
                    "{err}"
                );
                assert!(!root.exists(p));
            }
            assert!(root.resolve("/a").is_err());
            // The link itself can still be looked at.
            assert!(
                root.symlink_metadata("/a")
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
        });
    }

    #[test]
    fn symlink_chain_limit() {
        let tree = Tree::new();
        tree.file("/target", "end");
        // A chain of 30 links resolves; one of 50 does not.
        for i in 0..50 {
            let next = if i == 0 {
                "/target".to_string()
            } else {
                format!("/l{}", i - 1)
            };
            tree.link(&format!("/l{i}"), &next);
        }
        with_each_resolver(&tree, |root| {
            assert_eq!(read_str(root, "/l29").unwrap(), "end");
            assert!(read_str(root, "/l49").is_err());
        });
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let tree = Tree::new();
        nix::unistd::mkfifo(&tree.root.join("etc/fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        tree.link("/etc/to-fifo", "/etc/fifo");
        let path = tree.root.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut kinds = Vec::new();
            for resolver in [Resolver::UserSpace, Resolver::Kernel] {
                let Ok(root) = GuestRoot::open_with_resolver(&path, resolver) else {
                    continue;
                };
                for p in ["/etc/fifo", "/etc/to-fifo"] {
                    kinds.push(
                        root.open_file(p)
                            .map(|_| ())
                            .map_err(|e| (e.kind(), e.to_string())),
                    );
                    kinds.push(
                        root.read(p, 10)
                            .map(|_| ())
                            .map_err(|e| (e.kind(), e.to_string())),
                    );
                }
            }
            let _ = tx.send(kinds);
        });
        let results = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("reading a FIFO blocked");
        assert!(!results.is_empty());
        for r in results {
            let (kind, msg) = r.unwrap_err();
            assert_eq!(kind, io::ErrorKind::InvalidInput);
            assert!(msg.contains("fifo"), "{msg}");
        }
    }

    #[test]
    fn directories_and_devices_are_not_files() {
        let tree = Tree::new();
        tree.link("/etc/null", "/dev/null");
        with_each_resolver(&tree, |root| {
            let err = root.open_file("/etc").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(
                err.to_string()
                    .contains("/etc: not a regular file but a directory")
            );
            // The guest's /dev/null, not the host's: it does not exist.
            let err = root.open_file("/etc/null").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        });
        if nix::unistd::geteuid().is_root() {
            nix::sys::stat::mknod(
                &tree.root.join("etc/dev"),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap();
            with_each_resolver(&tree, |root| {
                let err = root.read("/etc/dev", 10).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
                assert!(err.to_string().contains("character device"));
            });
        }
    }

    #[test]
    fn oversized_file_is_refused() {
        let tree = Tree::new();
        tree.file("/big", &"x".repeat(100));
        with_each_resolver(&tree, |root| {
            let err = root.read("/big", 99).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
            assert!(err.to_string().contains("/big"));
            assert_eq!(root.read("/big", 100).unwrap().len(), 100);
            assert_eq!(root.read_head("/big", 10).unwrap(), b"xxxxxxxxxx");
            assert!(read_str(root, "/big").is_ok());
        });
    }

    #[test]
    fn binary_garbage_reads_lossily() {
        let tree = Tree::new();
        fs::write(tree.root.join("etc/bin"), [b'a', 0xff, 0xfe, 0, b'b']).unwrap();
        with_each_resolver(&tree, |root| {
            assert_eq!(read_str(root, "/etc/bin").unwrap(), "a\u{fffd}\u{fffd}\0b");
        });
    }

    #[test]
    fn metadata_read_dir_and_friends() {
        let tree = Tree::new();
        tree.file("/usr/lib/modules/5.14/modules.dep", "");
        tree.link("/lib", "usr/lib");
        tree.link("/usr/lib/dangling", "/nowhere");
        tree.file("/usr/lib/zz", "z");
        fs::write(
            tree.root.join(OsStr::from_bytes(b"usr/lib/\xffname")),
            "non-utf8",
        )
        .unwrap();
        with_each_resolver(&tree, |root| {
            assert!(root.metadata("/lib").unwrap().is_dir());
            assert!(
                root.symlink_metadata("/lib")
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert!(root.metadata("/lib/modules/5.14").unwrap().is_dir());
            assert!(root.exists("/lib/modules/5.14/modules.dep"));
            assert!(!root.exists("/lib/dangling"));
            assert!(root.symlink_metadata("/lib/dangling").is_ok());
            assert_eq!(
                root.read_link("/lib/dangling").unwrap(),
                PathBuf::from("/nowhere")
            );
            assert_eq!(
                root.read_link("/lib/zz").unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            let entries = root.read_dir("/lib").unwrap();
            let names: Vec<_> = entries.iter().map(|e| e.name.clone()).collect();
            assert_eq!(
                names,
                vec![
                    OsString::from("dangling"),
                    OsString::from("modules"),
                    OsString::from("zz"),
                    OsString::from_vec(b"\xffname".to_vec()),
                ]
            );
            let kinds: Vec<_> = entries.iter().map(|e| e.file_type).collect();
            assert_eq!(
                kinds,
                vec![
                    FileKind::Symlink,
                    FileKind::Dir,
                    FileKind::File,
                    FileKind::File
                ]
            );
            assert_eq!(entries[1].name_str(), Some("modules"));
            assert!(root.read_dir("/lib/zz").is_err());
            assert!(root.read_dir("/missing").is_err());
            // The root itself, however it is named.
            for p in ["", "/", ".", "/..", "/usr/.."] {
                assert!(root.metadata(p).unwrap().is_dir(), "{p:?}");
                assert!(!root.read_dir(p).unwrap().is_empty(), "{p:?}");
            }
            assert_eq!(
                root.resolve("/lib/modules/5.14/").unwrap(),
                root.root_path().join("usr/lib/modules/5.14")
            );
            assert!(root.read_dir("/lib/zz/").is_err());
            assert!(root.open_file("/etc/passwd\0x").is_err());
        });
    }

    #[test]
    fn userspace_resolver_depth_limit() {
        let tree = Tree::new();
        let deep = |n: usize| vec!["a"; n].join("/");
        fs::create_dir_all(tree.root.join(deep(MAX_DEPTH + 8))).unwrap();
        let dir = open_root_dir(&tree.root).unwrap();
        let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
        let r = resolve_in_root_userspace(dir.as_fd(), OsStr::new(&deep(MAX_DEPTH)), flags);
        assert!(r.is_ok());
        let err = resolve_in_root_userspace(dir.as_fd(), OsStr::new(&deep(MAX_DEPTH + 8)), flags)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
    }

    #[test]
    fn userspace_resolver_directly() {
        let tree = Tree::new();
        tree.link("/etc/os-release", "/etc/passwd");
        tree.link("/bin", "usr/bin");
        tree.file("/usr/bin/env", "ELF");
        tree.link("/usr/bin/sh", "../../bin/./env");
        let dir = open_root_dir(&tree.root).unwrap();
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;

        let r =
            resolve_in_root_userspace(dir.as_fd(), OsStr::new("/etc/os-release"), flags).unwrap();
        assert_eq!(r.guest_path, PathBuf::from("/etc/passwd"));
        let mut s = String::new();
        File::from(r.fd).read_to_string(&mut s).unwrap();
        assert_eq!(s, "guest passwd");

        let r = resolve_in_root_userspace(dir.as_fd(), OsStr::new("bin/sh"), flags).unwrap();
        assert_eq!(r.guest_path, PathBuf::from("/usr/bin/env"));

        // O_NOFOLLOW stops at the final link (O_PATH opens the link).
        let r = resolve_in_root_userspace(
            dir.as_fd(),
            OsStr::new("/bin/sh"),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        )
        .unwrap();
        assert_eq!(r.guest_path, PathBuf::from("/usr/bin/sh"));
        assert_eq!(
            FileKind::from_stat(&fstat(&r.fd).unwrap()),
            FileKind::Symlink
        );

        let err = resolve_in_root_userspace(dir.as_fd(), OsStr::new("/../outside/secret"), flags)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err =
            resolve_in_root_userspace(dir.as_fd(), OsStr::new("/etc/passwd/x"), flags).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));

        tree.link("/loop", "/loop");
        let err = resolve_in_root_userspace(dir.as_fd(), OsStr::new("/loop"), flags).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));

        let r = resolve_in_root_userspace(dir.as_fd(), OsStr::new("/"), OFlag::O_PATH).unwrap();
        assert_eq!(r.guest_path, PathBuf::from("/"));
    }
}
