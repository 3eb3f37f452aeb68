//! File helpers for the fixup directory and the stack's own files (not for
//! guest files: those go through the guest-root-confined writer).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Writes `data` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over the target, fsync the directory. A reader
/// sees the old file or the new one, never a part.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so that a rename or a new entry in it is durable.
/// File systems that cannot fsync a directory (9p under some servers) are
/// tolerated.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates an empty file durably (BEGIN, END markers).
pub fn touch_durable(path: &Path) -> io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.sync_all()?;
    drop(f);
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => sync_dir(d),
        _ => Ok(()),
    }
}

/// Removes a path whatever it is (a file, a symlink, a directory tree)
/// without following symlinks. A missing path is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

/// Decodes the octal escapes of fstab and /proc/self/mountinfo fields
/// (`\040` → space, `\134` → backslash); a sequence that is not three
/// octal digits of a byte stays as it is.
pub fn unescape_octal(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("result.json");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn write_atomic_fails_cleanly_in_missing_dir() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nope/result.json");
        assert!(write_atomic(&p, b"x", 0o644).is_err());
    }

    #[test]
    fn remove_any_does_not_follow_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let keep = d.path().join("keep");
        fs::create_dir(&keep).unwrap();
        fs::write(keep.join("f"), b"x").unwrap();
        let stale = d.path().join("fixup");
        fs::create_dir(&stale).unwrap();
        std::os::unix::fs::symlink(&keep, stale.join("link")).unwrap();
        remove_any(&stale).unwrap();
        assert!(!stale.exists());
        assert!(keep.join("f").exists());
        remove_any(&stale).unwrap();
    }
}
