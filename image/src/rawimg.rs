//! What the disk-image writers (VMDK, qcow2) share: reading the raw image
//! block by block, the errors, and output staged beside its destination.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An error of converting a raw disk image (VMDK, qcow2).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The raw image's size is zero or not a multiple of 512 bytes.
    #[error("the raw disk image is {size} bytes, not a non-zero multiple of 512")]
    BadRawSize {
        /// The size found.
        size: u64,
    },
    /// Reading the raw image failed.
    #[error("reading the raw disk image at byte {offset}")]
    Read {
        /// Where the read started.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing the output file failed.
    #[error("writing {}", path.display())]
    Write {
        /// The destination path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The disk is too large for 32-bit sector offsets.
    #[error("{} would exceed the 2 TiB a VMDK sparse extent can address", path.display())]
    TooLarge {
        /// The destination path.
        path: PathBuf,
    },
    /// The destination has no file name to put in the descriptor.
    #[error("{} has no file name", path.display())]
    NoFileName {
        /// The destination path.
        path: PathBuf,
    },
}

impl ImageError {
    /// A write error of the output file `path`.
    pub fn write(path: &Path, source: io::Error) -> Self {
        ImageError::Write {
            path: path.into(),
            source,
        }
    }
}

/// The raw image's size in bytes (a non-zero multiple of 512); leaves the
/// reader anywhere.
pub fn raw_size<R: Seek>(raw: &mut R) -> Result<u64, ImageError> {
    let size = raw
        .seek(SeekFrom::End(0))
        .map_err(|source| ImageError::Read { offset: 0, source })?;
    if size == 0 || size % 512 != 0 {
        return Err(ImageError::BadRawSize { size });
    }
    Ok(size)
}

/// Reads block `index` (of `buf.len()` bytes) of a raw image of `size`
/// bytes into `buf`, zero-filling past the end of the image.
pub fn read_block<R: Read + Seek>(
    raw: &mut R,
    index: u64,
    size: u64,
    buf: &mut [u8],
) -> Result<(), ImageError> {
    let block = buf.len() as u64;
    let offset = index * block;
    let len = size.saturating_sub(offset).min(block) as usize;
    read_at(raw, offset, &mut buf[..len]).map_err(|source| ImageError::Read { offset, source })?;
    buf[len..].fill(0);
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub(crate) fn read_at<R: Read + Seek>(raw: &mut R, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    raw.seek(SeekFrom::Start(offset))?;
    raw.read_exact(buf)
}

/// Whether every byte is zero.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    // OR-folding fixed-size chunks lets the compiler vectorise the scan.
    buf.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Writes `len` zero bytes.
pub(crate) fn write_zeros<W: Write>(w: &mut W, mut len: u64) -> io::Result<()> {
    let zeros = [0u8; 8192];
    while len > 0 {
        let n = len.min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..n])?;
        len -= n as u64;
    }
    Ok(())
}

/// An output file written under a temporary name beside its destination
/// and renamed into place by [`StagedFile::commit`]; dropped uncommitted, it
/// removes the temporary file.
pub(crate) struct StagedFile {
    dest: PathBuf,
    file: BufWriter<File>,
    guard: TempGuard,
}

/// Removes the temporary file on drop unless disarmed.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl StagedFile {
    /// Creates `.<name>.<pid>.tmp` in the destination's directory.
    pub(crate) fn create(dest: &Path) -> io::Result<Self> {
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "destination has no file name")
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let open = || OpenOptions::new().write(true).create_new(true).open(&tmp);
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A leftover of an earlier run with this process id.
                fs::remove_file(&tmp)?;
                open()?
            }
            other => other?,
        };
        Ok(StagedFile {
            dest: dest.into(),
            file: BufWriter::with_capacity(1 << 20, file),
            guard: TempGuard {
                path: tmp,
                armed: true,
            },
        })
    }

    /// The writer of the temporary file.
    pub(crate) fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.file
    }

    /// Flushes, syncs and renames the file into place.
    pub(crate) fn commit(self) -> io::Result<()> {
        let StagedFile {
            dest,
            file,
            mut guard,
        } = self;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&guard.path, &dest)?;
        guard.armed = false;
        Ok(())
    }
}
